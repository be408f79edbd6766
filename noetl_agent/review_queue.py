"""The review queue: every policy proposal and where it stands, folded from the event log.

Policy events are stored under the pseudo execution id ``policy`` (they belong to no
execution, so execution listings never show them). :class:`ReviewQueue` folds that
stream in ``seq`` order and keeps its position, so each refresh reads only what was
appended since: the same code on every event store (SQLite, memory, PostgreSQL).

The fold decides how events that race resolve: the first terminal event of a proposal
(rejected, applied) wins and later decisions of it are ignored; repeated events collapse
by their ids when they are appended.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.core import events as ev
from engine.core.events import Event
from engine.ports import EventStore
from learning.policy.model import Target

POLICY_STREAM = "policy"
Status = Literal["pending", "approved", "rejected", "applied", "rolled_back", "expired", "stale"]
STATUSES: tuple[Status, ...] = (
    "pending",
    "approved",
    "rejected",
    "applied",
    "rolled_back",
    "expired",
    "stale",
)


@dataclass(slots=True)
class ProposalState:
    """One proposal as its events left it (``status`` before expiry and staleness, which
    depend on the clock and the catalog: see ``ProposalService``)."""

    id: str
    fingerprint: str
    generation: int
    target: Target
    kind: str
    patch: list[dict[str, Any]]
    evidence: dict[str, Any]
    evidence_size: int
    rationale: str
    learner: str
    proposed_by: dict[str, Any]
    requested_by: dict[str, Any] | None
    quorum: int
    created_at: str
    expires_at: str
    diff: str
    rolls_back: str | None = None
    notes: list[str] = field(default_factory=list)
    status: Status = "pending"
    decisions: list[dict[str, Any]] = field(default_factory=list)
    from_version: int | None = None
    applied_version: int | None = None
    applied_at: str | None = None
    inverse_patch: list[dict[str, Any]] | None = None
    evaluation: dict[str, Any] | None = None
    rolled_back_by: str | None = None

    @property
    def approvers(self) -> list[str]:
        """Distinct names of the principals that approved, in order."""
        names = [d["decided_by"] for d in self.decisions if d["approved"]]
        return list(dict.fromkeys(names))

    def to_dict(self, status: Status | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "target": self.target.to_dict(),
            "kind": self.kind,
            "patch": self.patch,
            "evidence": self.evidence,
            "evidence_size": self.evidence_size,
            "rationale": self.rationale,
            "status": status or self.status,
            "proposed_by": self.proposed_by,
            "requested_by": self.requested_by,
            "learner": self.learner,
            "fingerprint": self.fingerprint,
            "generation": self.generation,
            "decisions": list(self.decisions),
            "quorum": self.quorum,
            "approvals": len(self.approvers),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "diff": self.diff,
            "rolls_back": self.rolls_back,
            "notes": list(self.notes),
            "from_version": self.from_version,
            "applied_version": self.applied_version,
            "applied_at": self.applied_at,
            "inverse_patch": self.inverse_patch,
            "evaluation": self.evaluation,
            "rolled_back_by": self.rolled_back_by,
        }


def _state(event: Event) -> ProposalState:
    p = event.payload
    target = p["target"]
    return ProposalState(
        id=str(p["proposal_id"]),
        fingerprint=str(p["fingerprint"]),
        generation=int(p["generation"]),
        target=Target(str(target["playbook"]), int(target["version"]), target.get("step")),
        kind=str(p["kind"]),
        patch=list(p["patch"]),
        evidence=dict(p.get("evidence") or {}),
        evidence_size=int(p.get("evidence_size") or 0),
        rationale=str(p.get("rationale") or ""),
        learner=str(p.get("learner") or ""),
        proposed_by=dict(p["proposed_by"]),
        requested_by=dict(p["requested_by"]) if p.get("requested_by") else None,
        quorum=int(p.get("quorum") or 1),
        created_at=event.timestamp,
        expires_at=str(p["expires_at"]),
        diff=str(p.get("diff") or ""),
        rolls_back=p.get("rolls_back"),
        notes=[str(note) for note in p.get("notes") or []],
    )


class ReviewQueue:
    """Proposals by id, folded incrementally from the ``policy`` stream of ``events``."""

    def __init__(self, events: EventStore) -> None:
        self.events = events
        self.position = 0  # seq of the last event folded
        self._items: dict[str, ProposalState] = {}
        self._by_fingerprint: dict[str, list[str]] = {}
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Fold what was appended since the last refresh."""
        async with self._lock:
            for event in await self.events.read(POLICY_STREAM, after_seq=self.position):
                self.fold(event)
                self.position = max(self.position, event.seq or 0)

    def fold(self, event: Event) -> None:
        """Apply one policy event."""
        kind, payload = event.event_type, event.payload
        if kind == ev.POLICY_PROPOSED:
            state = _state(event)
            if state.id not in self._items:
                self._items[state.id] = state
                self._by_fingerprint.setdefault(state.fingerprint, []).append(state.id)
            return
        item = self._items.get(str(payload.get("proposal_id")))
        if item is None:
            return
        if kind in (ev.POLICY_APPROVED, ev.POLICY_REJECTED) and item.status == "pending":
            approved = kind == ev.POLICY_APPROVED
            item.decisions.append(
                {
                    "decided_by": payload.get("decided_by"),
                    "kind": payload.get("decided_by_kind"),
                    "approved": approved,
                    "comment": payload.get("comment"),
                    "at": event.timestamp,
                }
            )
            if not approved:
                item.status = "rejected"
            elif len(item.approvers) >= item.quorum:
                item.status = "approved"
        elif kind == ev.POLICY_APPLIED and item.status in ("pending", "approved"):
            item.status = "applied"
            item.from_version = payload.get("from_version")
            item.applied_version = payload.get("to_version")
            item.applied_at = event.timestamp
            item.inverse_patch = list(payload.get("inverse_patch") or [])
        elif kind == ev.POLICY_EVALUATED and item.evaluation is None:
            item.evaluation = dict(payload.get("evaluation") or {})
            item.evaluation["rollback_proposal_id"] = payload.get("rollback_proposal_id")
        elif kind == ev.POLICY_ROLLED_BACK and item.status == "applied":
            item.status = "rolled_back"
            item.rolled_back_by = payload.get("rollback_proposal_id")

    def get(self, proposal_id: str) -> ProposalState | None:
        return self._items.get(proposal_id)

    def all(self) -> list[ProposalState]:
        """Every proposal, oldest first."""
        return list(self._items.values())

    def with_fingerprint(self, fingerprint: str) -> list[ProposalState]:
        """Proposals of one fingerprint, oldest (generation 1) first."""
        return [self._items[pid] for pid in self._by_fingerprint.get(fingerprint, [])]
