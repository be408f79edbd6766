"""Runs one ``RunTool`` command: renders the tools, applies the retry policy, reports events.

Shared by the embedded runtime and the distributed worker. For each tool of the step (a
pipeline passes each result on as ``_prev``) it renders the configuration, runs attempts
until the policy stops retrying and reports ``tool.started``, ``retry.started``,
``retry.processed`` and ``tool.processed`` through ``report``. Event ids derive from the
command and attempt, so a re-run command re-reports the same ids and the store keeps one.

Each ``tool.processed`` carries what the tool run cost in ``payload.meta.usage`` (see
:class:`_Usage` for what is measured and when it is exact); ``tool.started`` and
``tool.processed`` name the worker pool that ran it in ``payload.meta.pool``.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from engine.core import events as ev
from engine.core.commands import RunTool
from engine.core.events import Event
from engine.core.policy import PolicyDecision, decide_after_attempt
from engine.core.templates import plain, render_value
from engine.dsl.models import Policy, parse_duration
from engine.errors import NoetlError, TemplateError
from engine.ports import CredentialProvider, ToolContext
from engine.tools.outcome import ToolOutcome
from engine.tools.registry import ToolRegistry
from engine.tools.usage import process_cpu_seconds

Report = Callable[[list[Event]], Awaitable[None]]
_CONTEXT = re.compile(r"\bcontext\b")
_UNRENDERED = ("code", "spec", "kind", "name", "input", "assert", "desc")


class ChildRunner(Protocol):
    """Runs a sub-playbook for a ``playbook`` tool and returns its outcome."""

    async def run_child(
        self, command: RunTool, path: str, version: int | None, workload: dict[str, Any]
    ) -> ToolOutcome: ...


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class ToolRunner:
    def __init__(
        self,
        tools: ToolRegistry,
        *,
        credentials: CredentialProvider | None = None,
        base_dirs: Mapping[str, str] | None = None,
        children: ChildRunner | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.tools = tools
        self.credentials = credentials
        self.base_dirs = base_dirs if base_dirs is not None else {}
        self.children = children
        self._sleep = sleep

    async def run(self, command: RunTool, report: Report) -> None:
        """Run the command to its final outcome and report it (never raises for tool errors)."""
        previous: Any = None
        total = len(command.tools)
        for index, config in enumerate(command.tools):
            decision, outcome, attempts, usage = await self._run_tool(
                command, index, config, previous, report
            )
            last = index == total - 1
            stop = decision.action in ("fail", "jump", "break")
            payload: dict[str, Any] = {
                "output": plain(outcome.data),
                "error": outcome.error.to_dict() if outcome.error else None,
                "action": decision.action,
                "rule": decision.rule,
                "attempts": attempts,
                "set": plain(decision.set),
                "meta": {**outcome.meta, "usage": usage, "pool": command.pool},
                "tool": config.get("name") or config.get("kind"),
                "kind": config.get("kind"),
            }
            if decision.to:
                payload["jump_to"] = decision.to
            if total > 1:
                payload["pipeline_index"] = index
                if not (last or stop):
                    payload["partial"] = True
            if outcome.http_status is not None:
                payload["http_status"] = outcome.http_status
            status = ev.STATUS_ERROR if outcome.status == "error" else ev.STATUS_SUCCESS
            await report(
                [
                    self._event(
                        command,
                        ev.TOOL_PROCESSED,
                        f"{index}:done",
                        status=status,
                        attempt=attempts,
                        duration_ms=int(usage["wall_ms"]),
                        payload=payload,
                        tool=str(payload["tool"]),
                    )
                ]
            )
            if stop:
                return
            previous = outcome.data

    async def _run_tool(
        self,
        command: RunTool,
        index: int,
        config: dict[str, Any],
        previous: Any,
        report: Report,
    ) -> tuple[PolicyDecision, ToolOutcome, int, dict[str, Any]]:
        kind = str(config.get("kind"))
        name = str(config.get("name") or kind)
        where = f"step `{command.step}`, tool `{name}`"
        scope = dict(command.context)
        scope["_prev"] = previous
        spec = config.get("spec") or {}
        policy = Policy.model_validate(spec["policy"]) if spec.get("policy") else None
        usage = _Usage()
        attempt = 1
        await report(
            [
                self._event(
                    command,
                    ev.TOOL_STARTED,
                    f"{index}:start",
                    attempt=1,
                    tool=name,
                    payload={"meta": {"pool": command.pool}},
                )
            ]
        )
        while True:
            outcome = await self._attempt(command, config, scope, kind, where, attempt)
            usage.add(outcome)
            try:
                decision = decide_after_attempt(
                    policy, outcome.to_output(), attempt, scope, where=f"{where}, spec.policy"
                )
            except TemplateError as exc:
                outcome = ToolOutcome.fail("validation", str(exc))
                decision = PolicyDecision("fail", "policy error")
            if attempt > 1:
                await report(
                    [
                        self._event(
                            command,
                            ev.RETRY_PROCESSED,
                            f"{index}:retry:{attempt}",
                            status="error" if outcome.status == "error" else "success",
                            attempt=attempt,
                            tool=name,
                            entity_type="retry",
                            payload={
                                "reason": _reason(outcome),
                                "error": outcome.error.to_dict() if outcome.error else None,
                            },
                        )
                    ]
                )
            if decision.action != "retry":
                return decision, outcome, attempt, usage.finish()
            delay = decision.delay
            if decision.jitter and delay > 0:
                delay = random.uniform(0, delay)
            attempt += 1
            await report(
                [
                    self._event(
                        command,
                        ev.RETRY_STARTED,
                        f"{index}:retry-start:{attempt}",
                        status=ev.STATUS_IN_PROGRESS,
                        attempt=attempt,
                        tool=name,
                        entity_type="retry",
                        payload={
                            "delay_ms": int(delay * 1000),
                            "policy": decision.rule,
                            "attempts": decision.attempts,
                            "reason": _reason(outcome),
                        },
                    )
                ]
            )
            if delay > 0:
                await self._sleep(delay)

    async def _attempt(
        self,
        command: RunTool,
        config: dict[str, Any],
        scope: dict[str, Any],
        kind: str,
        where: str,
        attempt: int,
    ) -> ToolOutcome:
        try:
            rendered = {
                key: value
                if key in _UNRENDERED
                else render_value(value, scope, where=f"{where}.{key}")
                for key, value in config.items()
            }
            inputs = render_value(command.step_input, scope, where=f"{where}, step input")
            inputs.update(render_value(config.get("input") or {}, scope, where=f"{where}.input"))
        except TemplateError as exc:
            return ToolOutcome.fail("validation", str(exc))
        if scope.get("_prev") is not None:
            inputs.setdefault("_prev", scope["_prev"])
        if kind == "python":
            rendered = _inline_script(rendered)
            code = rendered.get("code")
            if isinstance(code, str) and "context" not in inputs and _CONTEXT.search(code):
                inputs["context"] = plain(  # upstream-style access to the whole context
                    {k: v for k, v in scope.items() if not k.startswith("_")}
                )
        timeout = command.timeout
        if rendered.get("timeout") is not None and kind != "approval":
            try:
                own = parse_duration(rendered["timeout"])
            except ValueError as exc:
                return ToolOutcome.fail("validation", f"{where}.timeout: {exc}")
            timeout = own if timeout is None else min(timeout, own)
        if kind == "playbook":
            if self.children is None:
                return ToolOutcome.fail("validation", f"{where}: sub-playbooks cannot run here")
            version = rendered.get("version")
            return await self.children.run_child(
                command, str(rendered["path"]), int(version) if version else None, inputs
            )
        executor = self.tools.get(kind)
        if executor is None:
            return ToolOutcome.fail(
                "validation",
                f"{where}: tool kind `{kind}` cannot run as a loop iteration or pipeline member"
                if kind == "approval"
                else f"{where}: no executor for tool kind `{kind}`",
            )
        ctx = ToolContext(
            execution_id=command.execution_id,
            step=command.step,
            step_run_id=command.step_run_id,
            attempt=attempt,
            timeout=timeout,
            base_dir=command.meta.get("base_dir") or self.base_dirs.get(command.execution_id),
            credentials=self.credentials,
        )
        try:
            if timeout is not None:
                return await asyncio.wait_for(executor.run(rendered, inputs, ctx), timeout + 5)
            return await executor.run(rendered, inputs, ctx)
        except TimeoutError:
            return ToolOutcome.fail(
                "timeout",
                f"{where} exceeded its {timeout:g}s timeout; raise spec.timeout or speed it up",
                retryable=True,
            )
        except NoetlError as exc:
            return ToolOutcome.fail("validation", f"{where}: {exc}")

    def _event(
        self,
        command: RunTool,
        event_type: str,
        key: str,
        *,
        tool: str,
        status: str | None = None,
        attempt: int | None = None,
        duration_ms: int | None = None,
        payload: dict[str, Any] | None = None,
        entity_type: str = "tool",
    ) -> Event:
        return Event(
            event_id=f"{command.execution_id}:{command.command_id}:{key}",
            event_type=event_type,
            execution_id=command.execution_id,
            timestamp=now(),
            entity_type=entity_type,
            entity_id=f"{command.step}.{tool}",
            parent_id=f"step:{command.step_run_id}",
            step_run_id=command.step_run_id,
            iteration=command.iteration,
            attempt=attempt,
            status=status or ev.STATUS_IN_PROGRESS,
            duration_ms=duration_ms,
            payload=payload or {},
        )


class _Usage:
    """What one tool run cost, all attempts and retry delays included.

    ``wall_ms`` is the elapsed time. A tool that measures its own attempts says so in its
    outcome's ``meta.usage``: the ``python`` tool reports the pool child that ran the code
    (CPU of the child and of subprocesses it reaped, and the child's memory high-water
    mark during the run). Then ``cpu_ms`` is their sum and ``peak_rss_kb`` their maximum,
    with ``scope: "tool"`` (an attempt whose child was killed reports nothing and counts as
    zero). For other tools ``cpu_ms`` is the CPU time of this process and of the
    subprocesses it reaped (shell commands) over the run, with ``scope: "process"``: exact
    when one command runs at a time, an upper bound when others share the process; no
    per-run memory peak can be told apart in a shared process, so none is given.
    """

    __slots__ = ("_cpu_ms", "_cpu_start", "_own", "_peak_kb", "_started")

    def __init__(self) -> None:
        self._started = time.perf_counter()
        self._cpu_start = process_cpu_seconds()
        self._own = False
        self._cpu_ms = 0.0
        self._peak_kb: int | None = None

    def add(self, outcome: ToolOutcome) -> None:
        """Count an attempt's own measurement, when its tool made one."""
        own = outcome.meta.get("usage")
        if not isinstance(own, dict):
            return
        self._own = True
        cpu = own.get("cpu_ms")
        if isinstance(cpu, int | float):
            self._cpu_ms += cpu
        peak = own.get("peak_rss_kb")
        if isinstance(peak, int):
            self._peak_kb = max(self._peak_kb or 0, peak)

    def finish(self) -> dict[str, Any]:
        """``{wall_ms, cpu_ms, scope}`` and, when measured, ``peak_rss_kb``."""
        wall_ms = round((time.perf_counter() - self._started) * 1000, 3)
        if not self._own:
            cpu_ms = round((process_cpu_seconds() - self._cpu_start) * 1000, 3)
            return {"wall_ms": wall_ms, "cpu_ms": cpu_ms, "scope": "process"}
        usage: dict[str, Any] = {
            "wall_ms": wall_ms,
            "cpu_ms": round(self._cpu_ms, 3),
            "scope": "tool",
        }
        if self._peak_kb is not None:
            usage["peak_rss_kb"] = self._peak_kb
        return usage


def _inline_script(config: dict[str, Any]) -> dict[str, Any]:
    """``script: {source: {type: inline, code: ...}}`` is the same as ``code: ...``."""
    script = config.get("script")
    if isinstance(script, dict) and (script.get("source") or {}).get("type") == "inline":
        config = {key: value for key, value in config.items() if key != "script"}
        config["code"] = str(script["source"].get("code") or "")
    return config


def _reason(outcome: ToolOutcome) -> str | None:
    if outcome.error is None:
        return None
    code = f"_{outcome.error.code}" if outcome.error.code is not None else ""
    return f"{outcome.error.kind}{code}"
