"""Read models over the event log: execution details, step runs and pending approvals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.core import events as ev
from engine.core.events import Event
from engine.ports import EventStore, ExecutionSummary


@dataclass(slots=True)
class StepRunView:
    step_run_id: str
    step: str
    status: str = "running"
    started_at: str | None = None
    finished_at: str | None = None
    attempts: int = 1
    iterations: int | None = None
    error: dict[str, Any] | None = None


@dataclass(slots=True)
class ExecutionView:
    summary: ExecutionSummary
    steps: list[StepRunView] = field(default_factory=list)
    result: Any = None
    error: dict[str, Any] | None = None
    events: int = 0

    def to_dict(self) -> dict[str, Any]:
        s = self.summary
        return {
            "execution_id": s.execution_id,
            "playbook_path": s.playbook_path,
            "playbook_version": s.playbook_version,
            "status": s.status,
            "started_at": s.started_at,
            "finished_at": s.finished_at,
            "parent_execution_id": s.parent_execution_id,
            "result": self.result,
            "error": self.error,
            "events": self.events,
            "steps": [
                {
                    "step_run_id": r.step_run_id,
                    "step": r.step,
                    "status": r.status,
                    "started_at": r.started_at,
                    "finished_at": r.finished_at,
                    "attempts": r.attempts,
                    "iterations": r.iterations,
                    "error": r.error,
                }
                for r in self.steps
            ],
        }


@dataclass(frozen=True, slots=True)
class PendingApproval:
    approval_id: str
    execution_id: str
    step: str
    prompt: str
    requested_at: str
    approvers: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "approval_id": self.approval_id,
            "execution_id": self.execution_id,
            "step": self.step,
            "prompt": self.prompt,
            "requested_at": self.requested_at,
            "approvers": self.approvers,
        }


def summarize(summary: ExecutionSummary, events: list[Event]) -> ExecutionView:
    """Fold an execution's events into what a person wants to see."""
    view = ExecutionView(summary, events=len(events))
    runs: dict[str, StepRunView] = {}
    for event in events:
        run_id = event.step_run_id
        if event.event_type == ev.STEP_STARTED and run_id:
            runs[run_id] = StepRunView(run_id, event.entity_id or "", started_at=event.timestamp)
        elif run_id in runs:
            run = runs[run_id]
            if event.event_type == ev.STEP_FINISHED:
                run.status = event.status or run.status
                run.finished_at = event.timestamp
                run.error = event.payload.get("error")
            elif event.event_type == ev.RETRY_STARTED:
                run.attempts = max(run.attempts, event.attempt or 1)
            elif event.event_type == ev.LOOP_STARTED:
                run.iterations = int(event.payload.get("count") or 0)
            elif event.event_type == ev.APPROVAL_REQUESTED:
                run.status = "paused"
        if event.event_type == ev.PLAYBOOK_PROCESSED:
            view.result = event.payload.get("result")
            view.error = event.payload.get("error")
    view.steps = list(runs.values())
    return view


async def pending_approvals(store: EventStore) -> list[PendingApproval]:
    """Workflow decision points waiting for a person, oldest first."""
    pending: list[PendingApproval] = []
    for summary in await store.list_executions(status="paused", limit=10_000):
        requested: dict[str, Event] = {}
        for event in await store.read(summary.execution_id):
            if event.event_type == ev.APPROVAL_REQUESTED and event.step_run_id:
                requested[event.step_run_id] = event
            elif event.event_type == ev.APPROVAL_DECIDED and event.step_run_id:
                requested.pop(event.step_run_id, None)
        for event in requested.values():
            pending.append(
                PendingApproval(
                    approval_id=str(event.payload.get("approval_id")),
                    execution_id=summary.execution_id,
                    step=event.entity_id or "",
                    prompt=str(event.payload.get("prompt") or ""),
                    requested_at=event.timestamp,
                    approvers=list(event.payload.get("approvers") or []),
                )
            )
    return sorted(pending, key=lambda item: item.requested_at)
