"""The evidence of one failed execution, read from its events and its catalog version.

:func:`failed_step` finds the step run that ended the execution (the error of
``playbook.processed``, else the last step that finished in error) and gathers what a
person needs to judge it: the error, how many attempts were made, the tail of the last
attempt's traceback, the step's events, its inputs as written in the playbook, the
workload they render from, and the tool's configuration (timeouts, retry policy).

Inputs leave here masked: every credential value :class:`Masker`'s redactor has learned,
and every value under a key that names a secret (``password``, ``token``, ``api_key``, ...),
whatever it holds. Everything here is pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.core import events as ev
from engine.core.events import Event
from engine.dsl.models import Playbook
from engine.runtime.redaction import MASK, Redactor
from noetl_agent.explain_causes import FailureError

SECRET_KEY = re.compile(
    r"pass(word|wd)?|secret|token|api[_-]?key|apikey|authori[sz]ation|credential|"
    r"private[_-]?key|dsn|cookie|session",
    re.IGNORECASE,
)
TRACEBACK_LINES = 12
MAX_CODE = 2000


class Masker:
    """Masks secrets in evidence: learned credential values, and values under secret keys."""

    def __init__(self, *redactors: Redactor) -> None:
        self.redactors = [redactor for redactor in redactors if redactor is not None]

    def text(self, text: str) -> str:
        for redactor in self.redactors:
            text = redactor.text(text)
        return text

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {
                self.text(str(key)): MASK
                if SECRET_KEY.search(str(key)) and item not in (None, "")
                else self.value(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value


@dataclass(slots=True)
class FailedStep:
    """The step run that failed, with its evidence (already masked)."""

    step: str
    step_run_id: str | None
    error: FailureError
    retryable: bool | None = None
    tool_kind: str | None = None
    attempts: int = 1
    iteration: int | None = None
    started_at: str | None = None
    failed_at: str | None = None
    traceback: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    workload: dict[str, Any] = field(default_factory=dict)
    tool: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "step_run_id": self.step_run_id,
            "tool_kind": self.tool_kind,
            "attempts": self.attempts,
            "iteration": self.iteration,
            "started_at": self.started_at,
            "failed_at": self.failed_at,
            "error": {
                "kind": self.error.kind,
                "code": self.error.code,
                "message": self.error.message,
                "retryable": self.retryable,
            },
            "traceback": self.traceback,
            "inputs": self.inputs,
            "workload": self.workload,
            "tool": self.tool,
            "events": self.events,
        }


def error_of(payload: Any) -> FailureError:
    """An event's ``error`` payload as a :class:`FailureError`."""
    if not isinstance(payload, Mapping):
        return FailureError(str(payload) if payload else "unknown error")
    message = str(payload.get("message") or payload.get("code") or "unknown error")
    code = payload.get("code")
    kind = payload.get("kind")
    return FailureError(message, str(code) if code else None, str(kind) if kind else None)


def _step_of(event: Event) -> str:
    if event.step_run_id:
        return event.step_run_id.partition("#")[0]
    return (event.entity_id or "").partition(".")[0]


def _compact(event: Event, masker: Masker) -> dict[str, Any]:
    item: dict[str, Any] = {
        "seq": event.seq,
        "event_type": event.event_type,
        "timestamp": event.timestamp,
    }
    for name in ("step_run_id", "attempt", "iteration", "status", "duration_ms"):
        value = getattr(event, name)
        if value is not None:
            item[name] = value
    error = event.payload.get("error")
    if error:
        item["error"] = masker.text(error_of(error).text)
    for name in ("reason", "delay_ms", "action", "rule"):
        if event.payload.get(name) not in (None, ""):
            item[name] = masker.value(event.payload[name])
    return item


def _tail(text: str, lines: int = TRACEBACK_LINES) -> str:
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join(kept)


def _tool_config(
    playbook: Playbook | None, step: str, masker: Masker
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(inputs, tool configuration) of ``step`` as written in the playbook, masked."""
    if playbook is None:
        return {}, {}
    try:
        definition = playbook.step(step)
    except KeyError:
        return {}, {}
    inputs: dict[str, Any] = dict(definition.input)
    tools: list[dict[str, Any]] = []
    for tool in definition.tools:
        inputs.update(tool.input or {})
        config = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
        config.pop("input", None)
        if isinstance(config.get("code"), str) and len(config["code"]) > MAX_CODE:
            config["code"] = config["code"][:MAX_CODE] + "…"
        tools.append(config)
    spec = definition.spec.model_dump(mode="json", exclude_none=True) if definition.spec else {}
    configuration: dict[str, Any] = {"tools": tools}
    if spec:
        configuration["spec"] = spec
    return masker.value(inputs), masker.value(configuration)


def failed_step(
    events: Sequence[Event], playbook: Playbook | None, masker: Masker
) -> FailedStep | None:
    """The evidence of the step run that failed the execution; None when no step failed
    (the execution failed before any step ran, or did not fail)."""
    final_error: Any = None
    run_id: str | None = None
    workload: dict[str, Any] = dict(playbook.workload) if playbook else {}
    for event in events:
        if event.event_type == ev.PLAYBOOK_EXECUTION_REQUESTED:
            workload.update(event.payload.get("workload") or {})
        elif event.event_type == ev.PLAYBOOK_PROCESSED and event.status == ev.STATUS_ERROR:
            final_error = event.payload.get("error")
            if isinstance(final_error, Mapping):
                run_id = final_error.get("step_run_id") or run_id
    if run_id is None:
        failed = [
            e for e in events if e.event_type == ev.STEP_FINISHED and e.status == ev.STATUS_ERROR
        ]
        if failed:
            run_id = failed[-1].step_run_id
    if run_id is None and final_error is None:
        return None
    mine = [event for event in events if run_id is not None and event.step_run_id == run_id]
    step = _step_of(mine[0]) if mine else ""
    if not step and isinstance(final_error, Mapping):
        step = str(final_error.get("step") or "")
    finished = next(
        (e for e in reversed(mine) if e.event_type == ev.STEP_FINISHED and e.payload.get("error")),
        None,
    )
    error_payload = finished.payload.get("error") if finished else final_error
    error = error_of(error_payload)
    error = FailureError(masker.text(error.message), error.code, error.kind)
    evidence = FailedStep(step=step, step_run_id=run_id, error=error)
    if isinstance(error_payload, Mapping) and "retryable" in error_payload:
        evidence.retryable = bool(error_payload["retryable"])
    for event in mine:
        if event.event_type == ev.STEP_STARTED:
            evidence.started_at = evidence.started_at or event.timestamp
        if event.attempt:
            evidence.attempts = max(evidence.attempts, event.attempt)
        if event.iteration is not None and event.status != ev.STATUS_CANCELLED:
            evidence.iteration = event.iteration  # not an iteration the failure cut short
        if event.event_type == ev.TOOL_PROCESSED:
            kind = event.payload.get("kind")
            if isinstance(kind, str):
                evidence.tool_kind = kind
            if event.status == ev.STATUS_ERROR:
                meta = event.payload.get("meta") or {}
                trace = meta.get("traceback") if isinstance(meta, Mapping) else None
                if isinstance(trace, str) and trace.strip():
                    evidence.traceback = masker.text(_tail(trace))
    evidence.failed_at = finished.timestamp if finished else (mine[-1].timestamp if mine else None)
    evidence.events = [_compact(event, masker) for event in mine]
    evidence.inputs, evidence.tool = _tool_config(playbook, step, masker)
    evidence.workload = masker.value(workload)
    if evidence.tool_kind is None and evidence.tool.get("tools"):
        evidence.tool_kind = "+".join(str(t.get("kind")) for t in evidence.tool["tools"])
    return evidence
