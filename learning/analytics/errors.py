"""Errors of the analytics store and its queries.

NoetlError (engine.errors)
└── LearningError (learning.errors)
    └── AnalyticsError
        ├── AnalyticsUnavailable   the store cannot be opened or reached (also a StoreError)
        ├── QueryRejected          analytics_query refused the SQL before running it
        └── QueryFailed            the SQL ran and ClickHouse refused or stopped it
            └── QueryLimitExceeded     it hit the row or time limit
"""

from __future__ import annotations

from engine.errors import StoreError
from learning.errors import LearningError


class AnalyticsError(LearningError):
    """Base of the analytics errors."""


class AnalyticsUnavailable(AnalyticsError, StoreError):
    """The chDB folder is in use by another process, or the ClickHouse server is down."""


class QueryRejected(AnalyticsError):
    """The SQL is not a single read-only statement over the analytics tables."""


class QueryFailed(AnalyticsError):
    """ClickHouse could not run the SQL (syntax, unknown column, ...)."""


class QueryLimitExceeded(QueryFailed):
    """The query returned too many rows or ran too long."""
