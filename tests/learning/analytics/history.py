"""Golden event histories shaped like the engine's (``ToolRunner`` and the state machine):
a playbook execution whose step runs go through attempts that fail or succeed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.core import events as ev
from engine.core.events import Event

OK: dict[str, Any] = {}


def http(code: int) -> dict[str, Any]:
    return {"kind": "http", "code": code, "message": f"GET /x returned {code}", "retryable": True}


TIMEOUT: dict[str, Any] = {
    "kind": "timeout",
    "code": None,
    "message": "exceeded its 1s timeout",
    "retryable": True,
}
KEY_ERROR: dict[str, Any] = {
    "kind": "python",
    "code": "KeyError",
    "message": "'region'",
    "retryable": False,
}


def _reason(error: dict[str, Any]) -> str:
    code = f"_{error['code']}" if error.get("code") is not None else ""
    return f"{error['kind']}{code}"


@dataclass
class History:
    """Events of one execution of ``playbook``, in the order the engine appends them."""

    execution_id: str
    playbook: str = "shop/orders"
    version: int = 1
    events: list[Event] = field(default_factory=list)
    _n: int = 0

    def __post_init__(self) -> None:
        self.add(
            ev.PLAYBOOK_EXECUTION_REQUESTED,
            entity_type="playbook",
            entity_id=self.playbook,
            payload={"playbook_path": self.playbook, "playbook_version": self.version},
        )

    def add(self, event_type: str, **fields: Any) -> Event:
        self._n += 1
        event = Event(
            event_id=f"{self.execution_id}:{self._n}",
            event_type=event_type,
            execution_id=self.execution_id,
            timestamp=f"2026-11-30T10:00:{self._n % 60:02d}.000000Z",
            **fields,
        )
        self.events.append(event)
        return event

    def step(
        self,
        step: str,
        outcomes: list[dict[str, Any]],
        *,
        pool: str = "cpu",
        wall_ms: float = 100.0,
        cpu_ms: float | None = None,
        peak_rss_kb: int | None = None,
        run: int = 1,
    ) -> None:
        """One step run whose tool took ``len(outcomes)`` attempts (``OK`` = success)."""
        run_id = f"{step}#{run}"
        tool = {"entity_id": f"{step}.http", "step_run_id": run_id, "parent_id": f"step:{run_id}"}
        self.add(ev.STEP_STARTED, entity_type="step", entity_id=step, step_run_id=run_id)
        self.add(
            ev.TOOL_STARTED, entity_type="tool", attempt=1, payload={"meta": {"pool": pool}}, **tool
        )
        for attempt in range(2, len(outcomes) + 1):
            failed = outcomes[attempt - 2]
            self.add(
                ev.RETRY_STARTED,
                entity_type="retry",
                attempt=attempt,
                status=ev.STATUS_IN_PROGRESS,
                payload={"delay_ms": 100, "policy": "rule 1", "reason": _reason(failed)},
                **tool,
            )
            now = outcomes[attempt - 1]
            self.add(
                ev.RETRY_PROCESSED,
                entity_type="retry",
                attempt=attempt,
                status="error" if now else "success",
                payload={"reason": _reason(now) if now else None, "error": now or None},
                **tool,
            )
        last = outcomes[-1]
        usage: dict[str, Any] = {"wall_ms": wall_ms, "scope": "process"}
        if cpu_ms is not None:
            usage.update(cpu_ms=cpu_ms, scope="tool")
        if peak_rss_kb is not None:
            usage["peak_rss_kb"] = peak_rss_kb
        self.add(
            ev.TOOL_PROCESSED,
            entity_type="tool",
            attempt=len(outcomes),
            status="error" if last else "success",
            duration_ms=int(wall_ms),
            payload={
                "output": None,
                "error": last or None,
                "action": "fail" if last else "continue",
                "rule": "default",
                "attempts": len(outcomes),
                "meta": {"usage": usage, "pool": pool},
                "tool": "http",
                "kind": "http",
                **({"http_status": last["code"]} if last.get("kind") == "http" else {}),
            },
            **tool,
        )
        self.add(
            ev.STEP_FINISHED,
            entity_type="step",
            entity_id=step,
            step_run_id=run_id,
            status="error" if last else "success",
            payload={"error": last} if last else {},
        )
