"""What one model call cost, recorded as an ``llm.called`` event.

Every attempt of every call is recorded, failed ones included: the model, what the call
was for, the tokens of the prompt and of the answer, the cost in US dollars when litellm
knows the model's price (``None`` when it does not), how long it took and, for a failure,
the redacted error. The events go to a log of their own (``execution_id`` names the piece
of work, such as one generation), never into an execution's log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from engine.core import events as ev
from engine.core.events import Event
from engine.ports import EventStore
from engine.runtime.tool_runner import now

ErrorKind = Literal["rate_limit", "timeout", "unavailable", "refused"]


@dataclass(frozen=True, slots=True)
class LlmCall:
    """One attempt of one model call."""

    call_id: str
    purpose: str
    model: str
    attempt: int
    status: Literal["ok", "error"]
    duration_ms: int
    prompt_chars: int
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "purpose": self.purpose,
            "model": self.model,
            "attempt": self.attempt,
            "status": self.status,
            "duration_ms": self.duration_ms,
            "prompt_chars": self.prompt_chars,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens,
            },
            "cost_usd": self.cost_usd,
            "error": self.error,
            "error_kind": self.error_kind,
        }

    def to_event(self, execution_id: str) -> Event:
        """The ``llm.called`` event of this attempt in the log ``execution_id``."""
        return Event(
            event_id=f"{execution_id}:llm:{self.call_id}:{self.attempt}",
            event_type=ev.LLM_CALLED,
            execution_id=execution_id,
            timestamp=now(),
            entity_type="llm",
            entity_id=self.model,
            attempt=self.attempt,
            status=ev.STATUS_SUCCESS if self.status == "ok" else ev.STATUS_ERROR,
            duration_ms=self.duration_ms,
            payload=self.to_dict(),
        )


Recorder = Callable[[LlmCall], Awaitable[None]]


def record_in(store: EventStore, execution_id: str) -> Recorder:
    """A recorder appending each call as an ``llm.called`` event to ``store`` under
    ``execution_id``."""

    async def record(call: LlmCall) -> None:
        await store.append([call.to_event(execution_id)])

    return record


def total_cost(calls: list[LlmCall]) -> dict[str, Any]:
    """Sums over ``calls``: attempts, tokens, and cost (``None`` when a price is unknown)."""
    costs = [call.cost_usd for call in calls if call.status == "ok"]  # failures are free
    known = [cost for cost in costs if cost is not None]
    return {
        "attempts": len(calls),
        "prompt_tokens": sum(call.prompt_tokens or 0 for call in calls),
        "completion_tokens": sum(call.completion_tokens or 0 for call in calls),
        "cost_usd": round(sum(known), 8) if len(known) == len(costs) else None,
    }
