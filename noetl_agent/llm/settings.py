"""Which model to call and how patiently, from the environment.

``NOETL_LLM_MODEL`` names any model litellm knows (``gpt-4o-mini``,
``anthropic/claude-3-5-haiku-20241022``, ``ollama/llama3.1``, ...); the provider's usual
variables (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``OLLAMA_API_BASE``, ...) are read by
litellm itself. Without a model the agent layer works offline.

``NOETL_LLM_TIMEOUT`` (seconds per attempt, default 60), ``NOETL_LLM_ATTEMPTS`` (attempts
per call on rate limits, timeouts and unavailable servers, default 4),
``NOETL_LLM_MAX_TOKENS`` (longest answer, default 4096).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

MODEL_ENV = "NOETL_LLM_MODEL"
TIMEOUT_ENV = "NOETL_LLM_TIMEOUT"
ATTEMPTS_ENV = "NOETL_LLM_ATTEMPTS"
MAX_TOKENS_ENV = "NOETL_LLM_MAX_TOKENS"


@dataclass(frozen=True, slots=True)
class LlmSettings:
    """How to call the model: which one, the timeout of one attempt, how many attempts a
    transient failure gets, the backoff before the second (doubling up to ``max_delay``)."""

    model: str | None = None
    timeout: float = 60.0
    attempts: int = 4
    delay: float = 1.0
    max_delay: float = 20.0
    max_tokens: int = 4096
    temperature: float = 0.0

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError(f"{TIMEOUT_ENV} must be a positive number of seconds")
        if self.attempts < 1:
            raise ValueError(f"{ATTEMPTS_ENV} counts every attempt; use 1 or more")
        if self.max_tokens < 1:
            raise ValueError(f"{MAX_TOKENS_ENV} must be positive")

    @property
    def configured(self) -> bool:
        """Whether a model is named."""
        return bool(self.model)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> LlmSettings:
        """Settings from ``NOETL_LLM_*``; ``ValueError`` naming a variable that is not a
        number."""
        env = os.environ if environ is None else environ
        return cls(
            model=(env.get(MODEL_ENV) or "").strip() or None,
            timeout=_number(env, TIMEOUT_ENV, 60.0),
            attempts=int(_number(env, ATTEMPTS_ENV, 4)),
            max_tokens=int(_number(env, MAX_TOKENS_ENV, 4096)),
        )


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
