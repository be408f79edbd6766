"""The execution state machine: events in, events and commands out.

An :class:`ExecutionMachine` folds an execution's events into its state (:meth:`apply`)
and works out what must happen next (:meth:`decide`). Decisions are level-triggered:
they are derived from the state, not from the last event, so after a crash feeding the
stored log and calling :meth:`decide` once emits exactly what was still missing, and a
stored log replayed event by event reproduces the same decisions.

Nothing here does I/O or reads the clock: event ids come from the execution id and the
position in the log, timestamps from the event that caused the decision.

Routing follows Petri-net semantics: a finished step's arcs are evaluated once
(``exclusive``: the first arc that holds; ``inclusive``: all that hold); an arc without
``when`` holds on success only; a step with several incoming arcs is a join that fires
once, when a token has arrived and no predecessor is running or can still be reached
from a running step.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from engine.core import events as ev
from engine.core.commands import RunTool
from engine.core.events import Event
from engine.core.templates import StepResult, StepResultList, plain, render_value, truthy
from engine.dsl.checks import successors
from engine.dsl.models import ApprovalTool, Playbook, Step, WorkbookTool, parse_duration
from engine.errors import TemplateError


@dataclass(frozen=True, slots=True)
class IterationOutcome:
    """A loop iteration's final outcome, reported and not yet closed by
    ``loop.iteration.finished``."""

    status: str  # success | error | cancelled
    attempt: int | None
    payload: dict[str, Any]


@dataclass(slots=True)
class StepRun:
    """One run of a step (a step may run again when a cycle re-enters it)."""

    step: str
    run_id: str
    status: str = "running"  # running | paused | success | error
    items: list[Any] | None = None  # loop items, None when the step has no loop
    results: dict[int, Any] = field(default_factory=dict)
    issued: int = 0  # loop iterations started
    in_flight: set[int] = field(default_factory=set)
    closing: dict[int, IterationOutcome] = field(default_factory=dict)  # to close, in order
    result: Any = None
    error: dict[str, Any] | None = None
    jump_to: str | None = None
    broke: bool = False
    outcome_ready: bool = False  # all work done, step.finished not yet emitted
    finished: bool = False  # step.finished emitted, routing pending
    routed: bool = False
    awaiting_approval: bool = False
    source: str | None = None  # the step whose arc started this run


@dataclass(frozen=True, slots=True)
class Decision:
    events: list[Event]
    commands: list[RunTool]


class ExecutionMachine:
    """State and decisions of one execution of one playbook.

    Every ``loop.iteration.started`` is closed by exactly one ``loop.iteration.finished``
    before its ``loop.finished``: when the iteration's final outcome is reported (after its
    retries), or, for iterations still running when another one failed the loop, with
    status ``cancelled``. ``close_iterations=False`` decides as engines did before they
    emitted ``loop.iteration.finished``, to replay the logs they wrote.
    """

    def __init__(
        self, playbook: Playbook, execution_id: str, *, close_iterations: bool = True
    ) -> None:
        self.playbook = playbook
        self.execution_id = execution_id
        self.close_iterations = close_iterations
        self.steps: dict[str, Step] = {step.step: step for step in playbook.workflow}
        self.graph = successors(playbook)
        self.predecessors: dict[str, set[str]] = {name: set() for name in self.steps}
        for name, targets in self.graph.items():
            for target in targets:
                self.predecessors[target].add(name)
        self.count = 0
        self.timestamp = ""
        self.requested: Event | None = None
        self.started = False
        self.status = "pending"  # pending | running | paused | completed | failed | cancelled
        self.finished = False
        self.workload: dict[str, Any] = {}
        self.ctx: dict[str, Any] = {}
        self.results: dict[str, Any] = {}
        self.runs: dict[str, StepRun] = {}
        self.run_counts: dict[str, int] = {}
        self.pending: deque[str] = deque()  # steps with a token, waiting to start
        self.join_waiting: set[str] = set()
        self.token_source: dict[str, str] = {}
        self.ended: list[str] = []  # step runs that ended the workflow (no arc fired)
        self.failure: dict[str, Any] | None = None
        self.cancel_reason: str | None = None
        self._outbox: list[Event] = []
        self._commands: list[RunTool] = []

    # ---------------------------------------------------------------- folding

    def apply(self, event: Event) -> None:
        """Fold one stored event into the state."""
        self.count += 1
        self.timestamp = event.timestamp or self.timestamp
        handler = _APPLY.get(event.event_type)
        if handler is not None:
            handler(self, event)

    def _on_requested(self, event: Event) -> None:
        self.requested = event
        workload = dict(self.playbook.workload)
        workload.update(event.payload.get("workload") or {})
        self.workload = workload

    def _on_started(self, event: Event) -> None:
        self.started = True
        self.status = "running"

    def _on_step_started(self, event: Event) -> None:
        name = event.entity_id or ""
        run_id = event.step_run_id or ""
        self.run_counts[name] = self.run_counts.get(name, 0) + 1
        if self.pending and name in self.pending:
            self.pending.remove(name)
        self.join_waiting.discard(name)
        run = StepRun(step=name, run_id=run_id, source=self.token_source.pop(name, None))
        self.runs[run_id] = run
        if "items" in event.payload:
            run.items = list(event.payload["items"])
        if event.payload.get("error"):
            run.status = "error"
            run.error = event.payload["error"]
            run.outcome_ready = True
        elif run.items is not None and not run.items:
            run.result = []
            run.status = "success"
            run.outcome_ready = True

    def _on_iteration_started(self, event: Event) -> None:
        run = self.runs[event.step_run_id or ""]
        index = event.iteration or 0
        run.issued = max(run.issued, index + 1)
        run.in_flight.add(index)

    def _on_tool_processed(self, event: Event) -> None:
        run = self.runs.get(event.step_run_id or "")
        if run is None or run.outcome_ready or run.finished:
            return  # a late report for a run that has already ended
        payload = event.payload
        if payload.get("partial"):
            return  # an inner tool of a pipeline; the pipeline reports its final outcome
        if run.items is not None and (event.iteration or 0) in run.results:
            return  # the iteration's outcome is final already
        for key, value in (payload.get("set") or {}).items():
            self._set_ctx(key, value)
        action = payload.get("action") or ("fail" if event.status == "error" else "continue")
        data = payload.get("output")
        if action == "continue" and event.status == "error" and data is None:
            data = {"error": payload.get("error")}
        if run.items is None:
            run.result = data
            if action == "fail":
                run.status, run.error = "error", payload.get("error") or {"message": "failed"}
            else:
                run.status = "success"
                run.jump_to = payload.get("jump_to") if action == "jump" else None
            run.outcome_ready = True
            return
        index = event.iteration or 0
        run.in_flight.discard(index)
        run.results[index] = data
        run.closing[index] = IterationOutcome(
            ev.STATUS_ERROR if event.status == ev.STATUS_ERROR else ev.STATUS_SUCCESS,
            event.attempt,
            {"output": data, "error": payload.get("error"), "action": action},
        )
        if action == "fail":
            run.status, run.error = "error", payload.get("error") or {"message": "failed"}
            run.outcome_ready = True
        elif action in ("break", "jump"):
            run.broke = True
            run.jump_to = payload.get("jump_to") if action == "jump" else None
        done = run.broke or len(run.results) == len(run.items)
        if not run.outcome_ready and not run.in_flight and done:
            run.status = "success"
            run.result = [run.results[i] for i in sorted(run.results)]
            run.outcome_ready = True

    def _on_iteration_finished(self, event: Event) -> None:
        run = self.runs.get(event.step_run_id or "")
        if run is None or event.iteration is None:
            return
        run.closing.pop(event.iteration, None)
        run.in_flight.discard(event.iteration)

    def _on_loop_finished(self, event: Event) -> None:
        run = self.runs.get(event.step_run_id or "")
        if run is not None:
            run.closing.clear()  # a log written before iterations were closed

    def _on_approval_requested(self, event: Event) -> None:
        run = self.runs[event.step_run_id or ""]
        run.awaiting_approval = True
        run.status = "paused"

    def _on_paused(self, event: Event) -> None:
        self.status = "paused"

    def _on_resumed(self, event: Event) -> None:
        self.status = "running"

    def _on_approval_decided(self, event: Event) -> None:
        run = self.runs.get(event.step_run_id or "")
        if run is None or not run.awaiting_approval:
            return
        run.awaiting_approval = False
        run.result = {
            "approved": bool(event.payload.get("approved")),
            "comment": event.payload.get("comment"),
            "decided_by": event.payload.get("decided_by"),
        }
        run.status = "success"
        run.outcome_ready = True

    def _on_step_finished(self, event: Event) -> None:
        run = self.runs[event.step_run_id or ""]
        run.outcome_ready = False
        run.finished = True
        run.status = event.status or run.status
        if run.status == "success":
            self.results[run.step] = _wrap(run.result)
            for key, value in (event.payload.get("set") or {}).items():
                self._set_ctx(key, value)

    def _on_next_evaluated(self, event: Event) -> None:
        run = self.runs[event.step_run_id or ""]
        run.routed = True
        for key, value in (event.payload.get("set") or {}).items():
            self._set_ctx(key, value)
        selected = [item["step"] for item in event.payload.get("selected", [])]
        for target in selected:
            self.token_source[target] = run.step
            if len(self.predecessors.get(target, ())) > 1:
                self.join_waiting.add(target)
            else:
                self.pending.append(target)
        if not selected:
            if run.status == "error":
                self.failure = {"step": run.step, "step_run_id": run.run_id, **(run.error or {})}
            else:
                self.ended.append(run.run_id)

    def _on_cancel_requested(self, event: Event) -> None:
        self.cancel_reason = str(event.payload.get("reason") or "cancelled by request")

    def _on_workflow_finished(self, event: Event) -> None:
        self.finished = True

    def _on_processed(self, event: Event) -> None:
        self.finished = True
        self.status = {"success": "completed", "error": "failed"}.get(
            event.status or "", "cancelled"
        )

    # ---------------------------------------------------------------- deciding

    def handle(self, event: Event) -> Decision:
        """Apply ``event`` and return what follows from the new state."""
        self.apply(event)
        return self.decide()

    def decide(self) -> Decision:
        """Emit every event and command that the current state calls for."""
        self._outbox, self._commands = [], []
        if self.requested is None or self.finished:
            return Decision([], [])
        if not self.started:
            self._emit(ev.PLAYBOOK_REQUEST_EVALUATED, "playbook", self.playbook.path)
            self._emit(
                ev.PLAYBOOK_STARTED,
                "playbook",
                self.playbook.path,
                status=ev.STATUS_IN_PROGRESS,
            )
            self._emit(ev.WORKFLOW_STARTED, "workflow", self.playbook.metadata.name)
            self.pending.append(self.playbook.entry_step)
        if self.cancel_reason is not None:
            self._finish("cancelled", error={"kind": "cancelled", "message": self.cancel_reason})
            return Decision(self._outbox, self._commands)
        progress = True
        while progress and not self.finished:
            progress = False
            for run in list(self.runs.values()):
                if run.closing and self.close_iterations:
                    self._close_iterations(run)
                if run.outcome_ready:
                    self._finish_step(run)
                    progress = True
                elif run.finished and not run.routed:
                    self._route(run)
                    progress = True
                elif run.items is not None and run.status == "running":
                    progress |= self._issue_iterations(run)
            if self.failure is not None:
                self._finish("error", error=self.failure)
                break
            while self.pending:
                self._start_step(self.pending[0])
                progress = True
            for name in sorted(self.join_waiting):
                if self._join_ready(name):
                    self._start_step(name)
                    progress = True
        if (
            not self.finished
            and self.status == "paused"
            and not any(run.awaiting_approval for run in self.runs.values())
        ):
            self._emit(ev.PLAYBOOK_RESUMED, "playbook", self.playbook.path, status="in_progress")
        if not self.finished and self._idle():
            self._finish("success")
        return Decision(self._outbox, self._commands)

    def outstanding(self) -> list[RunTool]:
        """Commands started but not yet reported: re-issue them after a restart."""
        commands: list[RunTool] = []
        for run in self.runs.values():
            if run.finished or run.outcome_ready or run.awaiting_approval:
                continue
            if run.items is None:
                commands.append(self._command(run, None))
            else:
                commands += [self._command(run, index) for index in sorted(run.in_flight)]
        return commands

    @property
    def result(self) -> Any:
        """The result of the step run(s) that ended the workflow."""
        ends = [self.runs[run_id] for run_id in self.ended if run_id in self.runs]
        if len(ends) == 1:
            return plain(ends[0].result)
        return {run.step: plain(run.result) for run in ends}

    # ---------------------------------------------------------------- helpers

    def _emit(
        self,
        event_type: str,
        entity_type: str,
        entity_id: str,
        *,
        step_run_id: str | None = None,
        iteration: int | None = None,
        attempt: int | None = None,
        status: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> Event:
        event = Event(
            event_id=f"{self.execution_id}:{self.count + 1}",
            event_type=event_type,
            execution_id=self.execution_id,
            timestamp=self.timestamp,
            entity_type=entity_type,
            entity_id=entity_id,
            parent_id=f"step:{step_run_id}" if step_run_id and entity_type != "step" else None,
            step_run_id=step_run_id,
            iteration=iteration,
            attempt=attempt,
            status=status,
            payload=payload or {},
        )
        self.apply(event)
        self._outbox.append(event)
        return event

    def context(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The template context: workload, ``ctx``, finished steps' results, ids."""
        # Steps that have not run read as None (so `a.x if a else b.x` works on branches),
        # while names that are neither steps nor workload keys stay undefined errors.
        scope: dict[str, Any] = dict.fromkeys(self.steps)
        scope.update(self.workload)
        scope["workload"] = self.workload
        scope.update(self.results)
        scope["ctx"] = self.ctx
        scope["vars"] = self.ctx
        scope["execution_id"] = self.execution_id
        if self.requested is not None:
            parent = self.requested.payload.get("parent_execution_id")
            scope["parent_execution_id"] = parent
        if extra:
            scope.update(extra)
        return scope

    def _set_ctx(self, key: str, value: Any) -> None:
        name = key.removeprefix("ctx.").removeprefix("vars.")
        self.ctx[name] = value

    def _start_step(self, name: str) -> None:
        step = self.steps[name]
        number = self.run_counts.get(name, 0) + 1
        run_id = f"{name}#{number}"
        payload: dict[str, Any] = {}
        if step.loop is not None:
            try:
                items = render_value(
                    step.loop.in_, self.context(), where=f"step `{name}`, field loop.in"
                )
                if isinstance(items, dict):
                    items = list(items.items())
                if not isinstance(items, list | tuple):
                    raise TemplateError(
                        f"step `{name}`, field loop.in: expected a list, got "
                        f"{type(items).__name__}; make `in` render to a list"
                    )
                payload["items"] = plain(list(items))
            except TemplateError as exc:
                payload["error"] = {"kind": "validation", "message": str(exc)}
        self._emit(
            ev.STEP_STARTED,
            "step",
            name,
            step_run_id=run_id,
            status=ev.STATUS_IN_PROGRESS,
            payload=payload,
        )
        run = self.runs[run_id]
        if run.outcome_ready:
            return
        if run.items is not None:
            self._emit(
                ev.LOOP_STARTED,
                "loop",
                name,
                step_run_id=run_id,
                payload={"count": len(run.items), "mode": step.loop.spec.mode if step.loop else ""},
            )
            self._issue_iterations(run)
            return
        tool = step.tools[0]
        if isinstance(tool, ApprovalTool):
            self._request_approval(run, tool)
            return
        self._commands.append(self._command(run, None))

    def _request_approval(self, run: StepRun, tool: ApprovalTool) -> None:
        try:
            prompt = render_value(
                tool.prompt, self.context(), where=f"step `{run.step}`, field tool.prompt"
            )
        except TemplateError as exc:
            prompt = f"(prompt could not be rendered: {exc})"
        timeout = parse_duration(tool.timeout) if tool.timeout is not None else None
        self._emit(
            ev.APPROVAL_REQUESTED,
            "step",
            run.step,
            step_run_id=run.run_id,
            status=ev.STATUS_PAUSED,
            payload={
                "approval_id": f"{self.execution_id}/{run.run_id}",
                "prompt": str(prompt),
                "approvers": list(tool.approvers),
                "timeout_s": timeout,
                "on_timeout": tool.on_timeout,
            },
        )
        if self.status != "paused":
            self._emit(ev.PLAYBOOK_PAUSED, "playbook", self.playbook.path, status=ev.STATUS_PAUSED)

    def _issue_iterations(self, run: StepRun) -> bool:
        step = self.steps[run.step]
        assert step.loop is not None and run.items is not None
        limit = 1
        if step.loop.spec.mode == "parallel":
            limit = step.loop.spec.max_in_flight or len(run.items)
        issued = False
        while (
            not run.broke
            and run.status == "running"
            and run.issued < len(run.items)
            and len(run.in_flight) < limit
        ):
            index = run.issued
            self._emit(
                ev.LOOP_ITERATION_STARTED,
                "loop",
                run.step,
                step_run_id=run.run_id,
                iteration=index,
                status=ev.STATUS_IN_PROGRESS,
            )
            self._commands.append(self._command(run, index))
            issued = True
        return issued

    def _close_iterations(self, run: StepRun) -> None:
        """Emit ``loop.iteration.finished`` for every reported iteration not yet closed."""
        for index, outcome in list(run.closing.items()):
            self._emit(
                ev.LOOP_ITERATION_FINISHED,
                "loop",
                run.step,
                step_run_id=run.run_id,
                iteration=index,
                attempt=outcome.attempt,
                status=outcome.status,
                payload=outcome.payload,
            )

    def _command(self, run: StepRun, iteration: int | None) -> RunTool:
        step = self.steps[run.step]
        extra: dict[str, Any] = {}
        if iteration is not None and step.loop is not None and run.items is not None:
            item = run.items[iteration]
            extra = {
                step.loop.iterator: item,
                "iter": {step.loop.iterator: item, "index": iteration},
                "loop": {"index": iteration, "index1": iteration + 1, "length": len(run.items)},
                "loop_index": iteration,
            }
        if run.source and "result" not in self.steps and "result" not in self.workload:
            extra["result"] = self.results.get(run.source)  # the result that routed here
        timeout = None
        pool = "cpu"
        if step.spec is not None:
            if step.spec.timeout is not None:
                timeout = parse_duration(step.spec.timeout)
            if step.spec.runtime is not None:
                pool = step.spec.runtime.pool
        return RunTool(
            execution_id=self.execution_id,
            step=run.step,
            step_run_id=run.run_id,
            tools=tuple(self._resolved_tools(step)),
            step_input=dict(step.input),
            context=self.context(extra),
            iteration=iteration,
            timeout=timeout,
            pool=pool,
        )

    def _resolved_tools(self, step: Step) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = []
        for tool in step.tools:
            if isinstance(tool, WorkbookTool):
                target = self.playbook.workbook_tool(tool.name)
                config = target.model_dump(by_alias=True, exclude_none=True)
                merged = dict(config.get("input") or {})
                merged.update(tool.input or {})
                config["input"] = merged
                config["name"] = tool.name
                if tool.spec is not None:
                    config["spec"] = tool.spec.model_dump(by_alias=True, exclude_none=True)
                tools.append(config)
            else:
                tools.append(tool.model_dump(by_alias=True, exclude_none=True))
        return tools

    def _finish_step(self, run: StepRun) -> None:
        step = self.steps[run.step]
        payload: dict[str, Any] = {}
        if run.items is not None:
            if self.close_iterations:
                for index in sorted(run.in_flight):  # still running when the loop failed
                    run.closing[index] = IterationOutcome(
                        ev.STATUS_CANCELLED,
                        None,
                        {
                            "output": None,
                            "error": {
                                "kind": "cancelled",
                                "message": f"step `{run.step}` stopped when another iteration "
                                "failed, before this one reported its outcome",
                            },
                            "action": None,
                        },
                    )
                self._close_iterations(run)
            self._emit(
                ev.LOOP_FINISHED,
                "loop",
                run.step,
                step_run_id=run.run_id,
                status=run.status,
                payload={"count": len(run.results)},
            )
        if run.status == "success" and step.set:
            try:
                scope = self.context({run.step: _wrap(run.result), "result": run.result})
                payload["set"] = render_value(step.set, scope, where=f"step `{run.step}`, set")
            except TemplateError as exc:
                run.status, run.error = "error", {"kind": "validation", "message": str(exc)}
        if run.status == "error":
            payload["error"] = run.error
        if run.jump_to:
            payload["jump_to"] = run.jump_to
        self._emit(
            ev.STEP_FINISHED,
            "step",
            run.step,
            step_run_id=run.run_id,
            status=run.status,
            payload=payload,
        )

    def _route(self, run: StepRun) -> None:
        step = self.steps[run.step]
        status = "error" if run.status == "error" else "success"
        selected: list[dict[str, Any]] = []
        updates: dict[str, Any] = {}
        decided_by = "arcs"
        if run.jump_to:
            selected.append({"step": run.jump_to})
            decided_by = "policy jump"
        else:
            scope = self.context(
                {
                    "event": {"status": status, "name": run.step, "error": run.error},
                    "result": run.result,
                }
            )
            try:
                for index, arc in enumerate(self.playbook.arcs_of(step)):
                    where = f"step `{run.step}`, next.arcs[{index}]"
                    if arc.when is None:
                        holds = status == "success"
                    elif isinstance(arc.when, bool):
                        holds = arc.when
                    else:
                        holds = truthy(render_value(arc.when, scope, where=f"{where}.when"))
                    if not holds:
                        continue
                    selected.append({"step": arc.step, "arc": index})
                    if arc.set:
                        updates.update(render_value(arc.set, scope, where=f"{where}.set"))
                    if step.mode == "exclusive":
                        break
            except TemplateError as exc:
                selected, updates = [], {}
                run.status = "error"
                run.error = {"kind": "validation", "message": str(exc)}
        self._emit(
            ev.NEXT_EVALUATED,
            "next",
            run.step,
            step_run_id=run.run_id,
            status=ev.STATUS_SUCCESS,
            payload={
                "selected": selected,
                "mode": step.mode,
                "decided_by": decided_by,
                "step_status": status,
                "set": plain(updates),
            },
        )

    def _active(self) -> set[str]:
        names = {run.step for run in self.runs.values() if not run.routed}
        names.update(self.pending)
        return names

    def _join_ready(self, name: str) -> bool:
        active = self._active() - {name}
        if not active:
            return True
        seen = set(active)
        stack = list(active)
        while stack:
            for target in self.graph.get(stack.pop(), []):
                if target != name and target not in seen:
                    seen.add(target)
                    stack.append(target)
        return not (self.predecessors[name] & seen)

    def _idle(self) -> bool:
        return (
            not self.pending and not self.join_waiting and all(r.routed for r in self.runs.values())
        )

    def _finish(self, status: str, *, error: dict[str, Any] | None = None) -> None:
        payload: dict[str, Any] = {}
        if status == "success":
            payload["result"] = self.result
        if error is not None:
            payload["error"] = error
        wf_status = {"success": ev.STATUS_SUCCESS, "error": ev.STATUS_ERROR}.get(
            status, "cancelled"
        )
        self._emit(ev.WORKFLOW_FINISHED, "workflow", self.playbook.metadata.name, status=wf_status)
        self._emit(
            ev.PLAYBOOK_PROCESSED, "playbook", self.playbook.path, status=wf_status, payload=payload
        )


def _wrap(value: Any) -> Any:
    if isinstance(value, dict) and not isinstance(value, StepResult):
        return StepResult(value)
    if isinstance(value, list) and not isinstance(value, StepResultList):
        return StepResultList(value)
    return value


_APPLY = {
    ev.PLAYBOOK_EXECUTION_REQUESTED: ExecutionMachine._on_requested,
    ev.PLAYBOOK_STARTED: ExecutionMachine._on_started,
    ev.STEP_STARTED: ExecutionMachine._on_step_started,
    ev.LOOP_ITERATION_STARTED: ExecutionMachine._on_iteration_started,
    ev.LOOP_ITERATION_FINISHED: ExecutionMachine._on_iteration_finished,
    ev.LOOP_FINISHED: ExecutionMachine._on_loop_finished,
    ev.TOOL_PROCESSED: ExecutionMachine._on_tool_processed,
    ev.APPROVAL_REQUESTED: ExecutionMachine._on_approval_requested,
    ev.APPROVAL_DECIDED: ExecutionMachine._on_approval_decided,
    ev.PLAYBOOK_PAUSED: ExecutionMachine._on_paused,
    ev.PLAYBOOK_RESUMED: ExecutionMachine._on_resumed,
    ev.STEP_FINISHED: ExecutionMachine._on_step_finished,
    ev.NEXT_EVALUATED: ExecutionMachine._on_next_evaluated,
    ev.EXECUTION_CANCEL_REQUESTED: ExecutionMachine._on_cancel_requested,
    ev.WORKFLOW_FINISHED: ExecutionMachine._on_workflow_finished,
    ev.PLAYBOOK_PROCESSED: ExecutionMachine._on_processed,
}
