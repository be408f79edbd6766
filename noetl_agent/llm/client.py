"""Model access through litellm: one place for timeouts, retries, redaction and costs.

``LlmClient.complete(messages, purpose=...)`` sends a chat to the configured model and
returns the answer's text. Before anything leaves the process every message is passed
through a :class:`~engine.runtime.redaction.Redactor`, so a credential value the process
knows never reaches a provider. Rate limits, timeouts, connection failures and 5xx
answers are retried with exponential backoff up to ``settings.attempts`` attempts; any
other refusal (bad key, unknown model, bad request) fails at once with
:class:`LlmCallFailed`. Each attempt is handed to the recorder as an :class:`LlmCall`.

litellm takes seconds to import, so it is imported on the first call, after
``LITELLM_LOCAL_MODEL_COST_MAP=True`` keeps it from fetching its price list.

``scripted`` replays answers through litellm's own ``mock_response`` (one per attempt, an
item such as ``"litellm.RateLimitError"`` raising that error), so the whole path, token
counts and costs included, runs without a provider.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.runtime.redaction import Redactor, process_redactor
from noetl_agent.llm.calls import ErrorKind, LlmCall, Recorder
from noetl_agent.llm.errors import LlmCallFailed, LlmNotConfigured
from noetl_agent.llm.settings import MODEL_ENV, LlmSettings

logger = logging.getLogger(__name__)
Message = dict[str, str]


@dataclass(frozen=True, slots=True)
class LlmReply:
    """The model's answer and every attempt it took."""

    text: str
    calls: list[LlmCall] = field(default_factory=list)


def _litellm() -> Any:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def _classify(litellm: Any, exc: Exception) -> ErrorKind:
    if isinstance(exc, litellm.RateLimitError):
        return "rate_limit"
    if isinstance(exc, litellm.Timeout):
        return "timeout"
    unavailable = (
        litellm.APIConnectionError,
        litellm.ServiceUnavailableError,
        litellm.InternalServerError,
        litellm.BadGatewayError,
    )
    if isinstance(exc, unavailable):
        return "unavailable"
    return "refused"


class LlmClient:
    """Calls one model (``settings.model``) with the settings' timeout and retries."""

    def __init__(
        self,
        settings: LlmSettings,
        *,
        redactor: Redactor | None = None,
        recorder: Recorder | None = None,
        scripted: Sequence[str] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.redactor = redactor or process_redactor()
        self.recorder = recorder
        self._scripted = list(scripted) if scripted is not None else None
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"LlmClient({self.settings.model or 'no model'})"

    @property
    def model(self) -> str:
        if not self.settings.model:
            raise LlmNotConfigured(
                f"no model is configured; set {MODEL_ENV} (e.g. gpt-4o-mini) and the "
                "provider's API key, or work offline"
            )
        return self.settings.model

    def redact(self, messages: Sequence[Message]) -> list[Message]:
        """``messages`` with every known secret masked in their content."""
        return [
            {**message, "content": self.redactor.text(message["content"])} for message in messages
        ]

    async def complete(
        self, messages: Sequence[Message], *, purpose: str, recorder: Recorder | None = None
    ) -> LlmReply:
        """The model's answer to ``messages`` (redacted first); each attempt goes to
        ``recorder`` (default: the client's). Raise ``LlmNotConfigured`` without a model and
        ``LlmCallFailed`` when every attempt failed or the provider refused the call."""
        record = recorder or self.recorder
        model = self.model
        litellm = _litellm()
        safe = self.redact(messages)
        prompt_chars = sum(len(message["content"]) for message in safe)
        call_id = secrets.token_hex(6)
        calls: list[LlmCall] = []
        attempts = self.settings.attempts
        for attempt in range(1, attempts + 1):
            started = time.perf_counter()
            try:
                response = await litellm.acompletion(
                    model=model,
                    messages=safe,
                    timeout=self.settings.timeout,
                    max_tokens=self.settings.max_tokens,
                    temperature=self.settings.temperature,
                    num_retries=0,  # retried here, where each attempt is recorded
                    **self._mock(),
                )
            except Exception as exc:  # the provider boundary: every failure is classified
                kind = _classify(litellm, exc)
                message = self.redactor.text(f"{type(exc).__name__}: {exc}")[:2000]
                call = LlmCall(
                    call_id,
                    purpose,
                    model,
                    attempt,
                    "error",
                    _elapsed_ms(started),
                    prompt_chars,
                    error=message,
                    error_kind=kind,
                )
                await _record(record, call)
                calls.append(call)
                if kind == "refused":
                    raise LlmCallFailed(
                        f"model {model} refused the call ({message}); check {MODEL_ENV} and "
                        "the provider's API key",
                        calls=calls,
                    ) from exc
                if attempt == attempts:
                    raise LlmCallFailed(
                        f"model {model} failed {attempts} time(s), last with {kind}: "
                        f"{message}; try again later or raise NOETL_LLM_ATTEMPTS",
                        transient=True,
                        calls=calls,
                    ) from exc
                delay = min(self.settings.delay * 2 ** (attempt - 1), self.settings.max_delay)
                logger.info("model %s %s; attempt %d in %.1fs", model, kind, attempt + 1, delay)
                if delay > 0:
                    await self._sleep(delay)
                continue
            text = _content(response)
            usage = getattr(response, "usage", None)
            call = LlmCall(
                call_id,
                purpose,
                model,
                attempt,
                "ok",
                _elapsed_ms(started),
                prompt_chars,
                prompt_tokens=getattr(usage, "prompt_tokens", None),
                completion_tokens=getattr(usage, "completion_tokens", None),
                cost_usd=_cost(litellm, response),
            )
            await _record(record, call)
            calls.append(call)
            return LlmReply(text, calls)
        raise AssertionError("unreachable: the loop returns or raises")

    def _mock(self) -> dict[str, Any]:
        if self._scripted is None:
            return {}
        if not self._scripted:
            raise LlmCallFailed("the scripted answers are used up; script one answer per attempt")
        return {"mock_response": self._scripted.pop(0)}


async def _record(recorder: Recorder | None, call: LlmCall) -> None:
    if recorder is not None:
        await recorder(call)


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _content(response: Any) -> str:
    try:
        content = response.choices[0].message.content
    except (AttributeError, IndexError):
        return ""
    return str(content or "")


def _cost(litellm: Any, response: Any) -> float | None:
    hidden = getattr(response, "_hidden_params", None) or {}
    cost = hidden.get("response_cost")
    if isinstance(cost, int | float):
        return float(cost)
    try:
        return float(litellm.completion_cost(completion_response=response))
    except Exception:  # litellm raises plain exceptions for models it has no price for
        return None
