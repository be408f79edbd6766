"""Errors of model access.

AgentError (noetl_agent.errors)
└── LlmError
    ├── LlmNotConfigured   no model is configured (``NOETL_LLM_MODEL`` is unset)
    └── LlmCallFailed      the model could not answer: refused, unreachable, timed out or
                           rate limited on every attempt
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from noetl_agent.errors import AgentError

if TYPE_CHECKING:
    from noetl_agent.llm.calls import LlmCall


class LlmError(AgentError):
    """Base of the model-access errors."""


class LlmNotConfigured(LlmError):
    """No model is configured; set ``NOETL_LLM_MODEL`` (and the provider's key)."""


class LlmCallFailed(LlmError):
    """A model call failed for good; ``transient`` says whether retrying later may help."""

    def __init__(
        self, message: str, *, transient: bool = False, calls: list[LlmCall] | None = None
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.calls = list(calls or [])  # every attempt made, as recorded
