"""Feedback on explanations: did the explanation of a failed execution help?

Feedback is an event of the execution it is about (``feedback.recorded``), carrying who
gave it, whether the explanation helped, an optional comment and the cause the
explanation gave first (or the one the person names). Explaining later failures reads it
back: a cause that helped on a similar past failure counts more, one that did not counts
less (see :mod:`noetl_agent.explain_causes`). The execution's state machine ignores these
events, so feedback never changes an execution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from engine.core import events as ev
from engine.core.events import Event
from engine.ports import EventStore
from engine.runtime.redaction import Redactor
from engine.runtime.tool_runner import now
from noetl_agent.principals import Principal

MAX_COMMENT = 4000


@dataclass(frozen=True, slots=True)
class Feedback:
    """One recorded judgement of an explanation."""

    execution_id: str
    helpful: bool
    comment: str | None
    cause: str | None
    principal: str
    principal_kind: str
    recorded_at: str
    event_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "helpful": self.helpful,
            "comment": self.comment,
            "cause": self.cause,
            "principal": self.principal,
            "principal_kind": self.principal_kind,
            "recorded_at": self.recorded_at,
            "event_id": self.event_id,
        }

    @classmethod
    def of(cls, event: Event) -> Feedback:
        payload = event.payload
        return cls(
            execution_id=event.execution_id,
            helpful=bool(payload.get("helpful")),
            comment=payload.get("comment"),
            cause=payload.get("cause"),
            principal=str(payload.get("principal") or ""),
            principal_kind=str(payload.get("principal_kind") or ""),
            recorded_at=event.timestamp,
            event_id=event.event_id,
        )


def feedback_event(
    execution_id: str,
    *,
    helpful: bool,
    principal: Principal,
    comment: str | None = None,
    cause: str | None = None,
    redactor: Redactor | None = None,
) -> Event:
    """The ``feedback.recorded`` event of one judgement (a pasted secret in the comment
    is masked with ``redactor``)."""
    text = (comment or "").strip()[:MAX_COMMENT] or None
    if text is not None and redactor is not None:
        text = redactor.text(text)
    return Event(
        event_id=f"{execution_id}:feedback:{uuid4().hex}",
        event_type=ev.FEEDBACK_RECORDED,
        execution_id=execution_id,
        timestamp=now(),
        entity_type="execution",
        entity_id=execution_id,
        status=ev.STATUS_SUCCESS,
        payload={
            "helpful": helpful,
            "comment": text,
            "cause": cause,
            "principal": principal.name,
            "principal_kind": principal.kind,
        },
    )


async def record_feedback(events: EventStore, event: Event) -> Feedback:
    """Append a ``feedback.recorded`` event to its execution's log; ``NotFound`` when the
    execution is unknown."""
    await events.get_execution(event.execution_id)
    stored = await events.append([event])
    return Feedback.of(stored[0])


def feedback_in(events: list[Event]) -> list[Feedback]:
    """The feedback recorded in one execution's events, oldest first."""
    return [Feedback.of(event) for event in events if event.event_type == ev.FEEDBACK_RECORDED]


async def feedback_of(events: EventStore, execution_id: str) -> list[Feedback]:
    """The feedback recorded on ``execution_id``, oldest first ([] when none or unknown)."""
    return feedback_in(await events.read(execution_id))
