"""Errors of the agent layer.

NoetlError (engine.errors)
└── AgentError
    └── Forbidden      the principal may not do this (says which role or kind is needed)
"""

from __future__ import annotations

from engine.errors import NoetlError


class AgentError(NoetlError):
    """Base of the agent layer's errors."""


class Forbidden(AgentError):
    """The calling principal is not allowed to do what it asked."""
