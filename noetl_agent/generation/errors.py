"""Errors of playbook generation.

AgentError (noetl_agent.errors)
└── GenerationError
    ├── InvalidRequest       the description or constraints cannot be worked with
    └── DraftNotPromoted     a generated draft that runs code was asked to run live before
                             a human operator promoted it (also a ``Forbidden``: 403)
"""

from __future__ import annotations

from noetl_agent.errors import AgentError, Forbidden


class GenerationError(AgentError):
    """Base of the generation errors."""


class InvalidRequest(GenerationError):
    """The description is empty or too long, or a constraint names an unknown tool kind."""


class DraftNotPromoted(GenerationError, Forbidden):
    """A generated draft with code-executing tools has not been promoted by a human."""
