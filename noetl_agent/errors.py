"""Errors of the agent layer.

NoetlError (engine.errors)
└── AgentError
    ├── Forbidden          the principal may not do this (says which role or kind is needed)
    ├── Unauthorized       no bearer token, or one that is unknown or revoked
    ├── ClaimNotHeld       a worker reported on commands its token holds no claim on (also a
    │                      Conflict: 409, naming the commands)
    └── ApiError           the API server refused or failed a request for another reason
        └── ServerUnavailable   the API server cannot be reached
"""

from __future__ import annotations

from typing import Any

from engine.errors import Conflict, NoetlError


class AgentError(NoetlError):
    """Base of the agent layer's errors."""


class Forbidden(AgentError):
    """The calling principal is not allowed to do what it asked."""


class Unauthorized(AgentError):
    """The request carries no valid bearer token."""


class ClaimNotHeld(AgentError, Conflict):
    """A report about commands the reporting token holds no claim on; ``commands`` lists
    their global ids (the reporter should stop running them and drop their events)."""

    def __init__(self, message: str, commands: list[str]) -> None:
        super().__init__(message)
        self.commands = commands


class ApiError(AgentError):
    """An API response that maps to no more specific error; ``problem`` is its document."""

    def __init__(
        self, message: str, *, status: int | None = None, problem: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem or {}


class ServerUnavailable(ApiError):
    """The API server did not answer (not running, wrong address, timed out)."""
