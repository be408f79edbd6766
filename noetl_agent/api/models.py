"""Request bodies of the HTTP API. Unknown fields are refused (422), never ignored."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

import msgspec
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from engine.core import events as ev
from engine.core.events import Event, JsonObject
from learning.policy.model import ProposalKind

# What a worker may report: its tool's progress and outcome. Everything else in the log
# (step, loop, routing and lifecycle events) is decided by the engine itself.
WORKER_EVENT_TYPES = frozenset(
    {ev.TOOL_STARTED, ev.TOOL_PROCESSED, ev.RETRY_STARTED, ev.RETRY_PROCESSED}
)
MAX_BATCH = 1000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterRequest(_Body):
    content: str = Field(min_length=1, description="The playbook's YAML text.")


class ExecuteRequest(_Body):
    path: str = Field(min_length=1, description="Catalog path of the playbook.")
    version: int | None = Field(None, ge=1, description="Catalog version; latest if omitted.")
    workload: dict[str, Any] = Field(
        default_factory=dict, description="Inputs merged over the playbook's workload."
    )


class CancelRequest(_Body):
    reason: str = Field("cancelled by request", max_length=1000)


class DecisionRequest(_Body):
    approved: StrictBool
    comment: str | None = Field(None, max_length=10_000)


class ProposalDecisionRequest(_Body):
    """A decision on a policy proposal; a rejection says why."""

    approved: StrictBool
    comment: str | None = Field(None, max_length=10_000)

    @model_validator(mode="after")
    def _rejection_has_a_comment(self) -> Self:
        if not self.approved and not (self.comment or "").strip():
            raise ValueError("a rejection needs a comment saying why")
        return self


class SuggestRequest(_Body):
    playbook: str | None = Field(None, min_length=1, description="Only this playbook path.")


class PatchOperation(_Body):
    """One JSON-patch operation on the playbook document (RFC 6902 subset)."""

    op: Literal["add", "replace", "remove"]
    path: str = Field(min_length=1, description="JSON pointer, e.g. /workflow/0/tool/spec.")
    value: Any = None


class ProposalRequest(_Body):
    """A hand-written policy proposal: a patch against one catalog version."""

    playbook: str = Field(min_length=1, description="Catalog path of the playbook.")
    version: int | None = Field(None, ge=1, description="Version to patch; latest if omitted.")
    step: str | None = Field(None, min_length=1, description="The step the change is about.")
    kind: ProposalKind
    patch: list[PatchOperation] = Field(min_length=1, max_length=100)
    rationale: str = Field(min_length=1, max_length=10_000, description="Why it helps.")

    def operations(self) -> list[dict[str, Any]]:
        """The patch as plain operations (``value`` left out of ``remove``)."""
        return [
            {"op": o.op, "path": o.path} if o.op == "remove" else o.model_dump() for o in self.patch
        ]


class ClaimRequest(_Body):
    """A worker's claim on a command, or its renewal (``heartbeat``)."""

    worker_id: str = Field(min_length=1, max_length=200, description="Who holds the claim.")
    lease_seconds: float | None = Field(
        None,
        ge=1,
        le=600,
        description="Seconds the claim lasts unless renewed; the server's lease if omitted.",
    )


class WorkerRequest(_Body):
    """Which worker asks (it must hold the claim on the command in the path)."""

    worker_id: str = Field(min_length=1, max_length=200, description="Who holds the claim.")


class EventIn(_Body):
    """An event as ``Event.to_dict()`` writes it; ``seq`` and ``event_alias`` are ignored."""

    event_id: str = Field(min_length=1)
    event_type: str
    execution_id: str = Field(min_length=1)
    timestamp: str = Field(min_length=1)
    event_alias: str | None = None
    seq: int | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    parent_id: str | None = None
    step_run_id: str | None = None
    iteration: int | None = None
    attempt: int | None = None
    status: str | None = None
    duration_ms: int | None = None
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("event_type")
    @classmethod
    def _reported_by_workers(cls, value: str) -> str:
        if value not in WORKER_EVENT_TYPES:
            allowed = ", ".join(sorted(WORKER_EVENT_TYPES))
            raise ValueError(f"workers report only {allowed}; got {value!r}")
        return value

    def to_event(self) -> Event:
        # Field by field: model_dump would deep-copy the payload, which is ours already.
        return Event(
            event_id=self.event_id,
            event_type=self.event_type,
            execution_id=self.execution_id,
            timestamp=self.timestamp,
            entity_type=self.entity_type,
            entity_id=self.entity_id,
            parent_id=self.parent_id,
            step_run_id=self.step_run_id,
            iteration=self.iteration,
            attempt=self.attempt,
            status=self.status,
            duration_ms=self.duration_ms,
            payload=self.payload,
        )


class EventBatch(_Body):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


# The batch route's fast decoder: ``EventBatch`` in msgspec, which decodes straight from
# the body's bytes, and gives each payload its JSON text at once (a payload read from JSON
# holds JSON values only, so msgspec's encoder writes it as ``encode_payload`` would; the
# store then need not encode it). It accepts a subset of what ``EventBatch`` accepts, to
# the same values (it is strict where pydantic converts, e.g. ``"3"`` to 3, and refuses
# ``NaN``); whatever it refuses goes to ``EventBatch``, which decides and words the errors.
class _FastEvent(msgspec.Struct, forbid_unknown_fields=True):
    event_id: Annotated[str, msgspec.Meta(min_length=1)]
    event_type: str
    execution_id: Annotated[str, msgspec.Meta(min_length=1)]
    timestamp: Annotated[str, msgspec.Meta(min_length=1)]
    event_alias: str | None = None
    seq: int | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    parent_id: str | None = None
    step_run_id: str | None = None
    iteration: int | None = None
    attempt: int | None = None
    status: str | None = None
    duration_ms: int | None = None
    payload: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class _FastBatch(msgspec.Struct, forbid_unknown_fields=True):
    events: Annotated[list[_FastEvent], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


_FAST_BATCH = msgspec.json.Decoder(_FastBatch)
_PAYLOAD_TEXT = msgspec.json.Encoder()


def events_from_json(body: bytes) -> list[Event] | None:
    """The events of a batch body exactly as ``EventBatch`` reads them, payloads as
    ``JsonObject``; None when the fast decoder refuses the body (``EventBatch`` then
    decides, and words the errors)."""
    try:
        batch = _FAST_BATCH.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    events: list[Event] = []
    for item in batch.events:
        if item.event_type not in WORKER_EVENT_TYPES:
            return None
        read = item.payload
        if read is msgspec.UNSET:
            payload: dict[str, Any] = {}
        else:
            payload = JsonObject(read, _PAYLOAD_TEXT.encode(read).decode())
        events.append(
            Event(
                item.event_id,
                item.event_type,
                item.execution_id,
                item.timestamp,
                item.entity_type,
                item.entity_id,
                item.parent_id,
                item.step_run_id,
                item.iteration,
                item.attempt,
                item.status,
                item.duration_ms,
                payload,
            )
        )
    return events
