"""The event envelope and the canonical event types.

Follows the normative event model: canonical dot names, an envelope with
``event_id``, ``event_type``, ``timestamp`` and ``execution_id``; ``seq`` is assigned
by the store on append and is monotonic per execution; persistence is idempotent by
``(execution_id, event_id)``.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

# Playbook lifecycle
PLAYBOOK_EXECUTION_REQUESTED = "playbook.execution.requested"
PLAYBOOK_REQUEST_EVALUATED = "playbook.request.evaluated"
PLAYBOOK_STARTED = "playbook.started"
PLAYBOOK_PAUSED = "playbook.paused"
PLAYBOOK_RESUMED = "playbook.resumed"
PLAYBOOK_PROCESSED = "playbook.processed"
# Workflow, step, tool, loop, routing, retry
WORKFLOW_STARTED = "workflow.started"
WORKFLOW_FINISHED = "workflow.finished"
STEP_STARTED = "step.started"
STEP_FINISHED = "step.finished"
TOOL_STARTED = "tool.started"
TOOL_PROCESSED = "tool.processed"
LOOP_STARTED = "loop.started"
LOOP_ITERATION_STARTED = "loop.iteration.started"
LOOP_ITERATION_FINISHED = "loop.iteration.finished"
LOOP_FINISHED = "loop.finished"
NEXT_EVALUATED = "next.evaluated"
RETRY_STARTED = "retry.started"
RETRY_PROCESSED = "retry.processed"
# Added by this project
APPROVAL_REQUESTED = "approval.requested"
APPROVAL_DECIDED = "approval.decided"
EXECUTION_CANCEL_REQUESTED = "execution.cancel.requested"
PLAYBOOK_REGISTERED = "playbook.registered"
PLAYBOOK_GENERATED = "playbook.generated"
POLICY_PROPOSED = "policy.proposed"
POLICY_APPROVED = "policy.approved"
POLICY_REJECTED = "policy.rejected"
POLICY_APPLIED = "policy.applied"
POLICY_EVALUATED = "policy.evaluated"
POLICY_ROLLED_BACK = "policy.rolled_back"
FEEDBACK_RECORDED = "feedback.recorded"
LLM_CALLED = "llm.called"

KNOWN_EVENT_TYPES = frozenset(
    value for name, value in dict(globals()).items() if name.isupper() and isinstance(value, str)
)

STATUS_IN_PROGRESS = "in_progress"
STATUS_SUCCESS = "success"
STATUS_ERROR = "error"
STATUS_SKIPPED = "skipped"
STATUS_PAUSED = "paused"
STATUS_CANCELLED = "cancelled"


def alias(event_type: str) -> str:
    """Return the PascalCase display alias of a canonical dot name."""
    return "".join(part.capitalize() for part in event_type.replace("_", ".").split("."))


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of an execution's append-only log."""

    event_id: str
    event_type: str
    execution_id: str
    timestamp: str
    entity_type: str | None = None
    entity_id: str | None = None
    parent_id: str | None = None
    step_run_id: str | None = None
    iteration: int | None = None
    attempt: int | None = None
    status: str | None = None
    duration_ms: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    seq: int | None = None

    def with_seq(self, seq: int) -> Event:
        # Built directly: dataclasses.replace costs several times more on this hot path.
        return Event(
            self.event_id,
            self.event_type,
            self.execution_id,
            self.timestamp,
            self.entity_type,
            self.entity_id,
            self.parent_id,
            self.step_run_id,
            self.iteration,
            self.attempt,
            self.status,
            self.duration_ms,
            self.payload,
            seq,
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "event_alias": alias(self.event_type),
            "timestamp": self.timestamp,
            "execution_id": self.execution_id,
            "seq": self.seq,
        }
        for name in (
            "entity_type",
            "entity_id",
            "parent_id",
            "step_run_id",
            "iteration",
            "attempt",
            "status",
            "duration_ms",
        ):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        data["payload"] = self.payload
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        return cls(
            event_id=str(data["event_id"]),
            event_type=str(data["event_type"]),
            execution_id=str(data["execution_id"]),
            timestamp=str(data["timestamp"]),
            entity_type=data.get("entity_type"),
            entity_id=data.get("entity_id"),
            parent_id=data.get("parent_id"),
            step_run_id=data.get("step_run_id"),
            iteration=data.get("iteration"),
            attempt=data.get("attempt"),
            status=data.get("status"),
            duration_ms=data.get("duration_ms"),
            payload=dict(data.get("payload") or {}),
            seq=data.get("seq"),
        )


class JsonObject(dict[str, Any]):
    """A payload read from JSON that carries its JSON text (``json``), so a store can
    write it without encoding it again.

    Changing it in place drops the text (``json`` becomes None), and a copy or a pickle
    is a plain dict; a change deeper inside cannot be seen, which is why payloads are
    never changed once they are in an event.
    """

    __slots__ = ("json",)

    def __init__(self, items: dict[str, Any], json: str) -> None:
        super().__init__(items)
        self.json: str | None = json

    def __setitem__(self, key: str, value: Any) -> None:
        self.json = None
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.json = None
        super().__delitem__(key)

    def __ior__(self, other: Any) -> JsonObject:  # type: ignore[override,misc]
        self.json = None
        return super().__ior__(other)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.json = None
        super().update(*args, **kwargs)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self.json = None
        return super().setdefault(key, default)

    def pop(self, *args: Any) -> Any:
        self.json = None
        return super().pop(*args)

    def popitem(self) -> tuple[str, Any]:
        self.json = None
        return super().popitem()

    def clear(self) -> None:
        self.json = None
        super().clear()

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return deepcopy(dict(self), memo)

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))
