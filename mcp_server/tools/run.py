"""Run tools: start executions, follow them, read their events, cancel them."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from mcp_server.errors import tool_errors
from mcp_server.models import (
    Cancelled,
    EventLog,
    Execution,
    ExecutionList,
    ExecutionRow,
    ExecutionStarted,
)
from mcp_server.registry import Group, tool
from noetl_agent.executions import summarize
from noetl_agent.generation.errors import DraftNotPromoted

ExecutionId = Annotated[
    str, Field(min_length=1, description="An execution id from execute_playbook.")
]
Status = Literal["running", "paused", "completed", "failed", "cancelled"]
FINISHED = frozenset({"completed", "failed", "cancelled"})
POLL = 0.5  # longest wait between progress reports while an execution runs
NO_EXECUTION = "list_executions shows recent execution ids"
NO_PLAYBOOK = "list_playbooks shows what can be run; register_playbook adds one"


class RunTools(Group):
    name = "run"

    async def _execution(self, execution_id: str) -> Execution:
        events = self.services.engine.events
        with tool_errors(not_found=NO_EXECUTION):
            summary = await events.get_execution(execution_id)
            view = summarize(summary, await events.read(execution_id))
        return Execution.model_validate(view.to_dict())

    @tool("Execute a playbook", read_only=False, destructive=True, open_world=True)
    async def execute_playbook(
        self,
        path: Annotated[str, Field(min_length=1, description="Catalog path to run.")],
        ctx: Context[Any, Any],
        workload: Annotated[
            dict[str, Any] | None,
            Field(description="Values for the playbook's workload (its inputs)."),
        ] = None,
        version: Annotated[
            int | None, Field(ge=1, description="Catalog version; the latest when omitted.")
        ] = None,
        wait_seconds: Annotated[
            float,
            Field(ge=0, le=600, description="Wait up to this long for it to finish."),
        ] = 30.0,
    ) -> ExecutionStarted:
        """Start an execution of a registered playbook and wait (up to wait_seconds) for
        it to finish or pause for a person, reporting progress as steps finish. Steps
        run real tools (shell, HTTP, SQL, Python), so only run what the user asked for.
        Returns {execution_id, status, finished, result, error, steps, uri}; when it is
        still running, follow it with get_execution. A failed execution is a normal
        result: explain_failure tells why."""
        self.services.caller(ctx, "operator", "execute playbooks")
        engine = self.services.engine
        with tool_errors(not_found=NO_PLAYBOOK):
            try:
                execution_id = await engine.execute(
                    path.strip("/"), version=version, workload=workload
                )
            except DraftNotPromoted as exc:
                raise ToolError(
                    f"{path} is a generated draft that runs code and no human operator has "
                    "promoted it yet, so it cannot run live: dry_run_playbook runs it with "
                    "stand-ins meanwhile; ask the user to review and promote it"
                ) from exc
        await self._follow(execution_id, wait_seconds, ctx)
        view = await self._execution(execution_id)
        return ExecutionStarted(
            execution_id=execution_id,
            status=view.status,
            finished=view.status in FINISHED,
            playbook_path=view.playbook_path,
            playbook_version=view.playbook_version,
            result=view.result,
            error=view.error,
            steps=view.steps,
            uri=f"execution://{execution_id}",
        )

    async def _follow(self, execution_id: str, wait_seconds: float, ctx: Context[Any, Any]) -> None:
        """Wait until the execution settles or ``wait_seconds`` pass, reporting each
        step run that finished as progress."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        reported: set[str] = set()
        while True:
            remaining = deadline - loop.time()
            settled = False
            if remaining > 0:
                try:
                    await self.services.engine.wait(execution_id, timeout=min(remaining, POLL))
                    settled = True
                except TimeoutError:
                    pass
            view = await self._execution(execution_id)
            for run in view.steps:
                if run.finished_at and run.step_run_id not in reported:
                    reported.add(run.step_run_id)
                    await ctx.report_progress(len(reported), None, f"step {run.step} {run.status}")
            if settled or remaining <= 0 or view.status not in ("running",):
                return

    @tool("Read an execution", read_only=True)
    async def get_execution(self, execution_id: ExecutionId, ctx: Context[Any, Any]) -> Execution:
        """Read the state of one execution: status (running, paused, completed, failed,
        cancelled), its step runs with attempts, iterations and errors, and its result
        or error. Use it to follow an execution execute_playbook left running, or to
        look at a past one. Returns {execution_id, playbook_path, playbook_version,
        status, started_at, finished_at, result, error, events, steps}."""
        self.services.caller(ctx, "viewer", "read executions")
        return await self._execution(execution_id)

    @tool("Read an execution's events", read_only=True)
    async def get_execution_events(
        self,
        execution_id: ExecutionId,
        ctx: Context[Any, Any],
        after_seq: Annotated[
            int, Field(ge=0, description="Only events after this sequence number.")
        ] = 0,
        limit: Annotated[int, Field(ge=1, le=1000, description="At most this many.")] = 200,
    ) -> EventLog:
        """Read an execution's event log in order (tool started, retries, step finished,
        approvals ...), for detail that get_execution summarises. Page with after_seq
        set to the previous call's next_after_seq. Returns {execution_id, events,
        next_after_seq}."""
        self.services.caller(ctx, "viewer", "read executions")
        store = self.services.engine.events
        with tool_errors(not_found=NO_EXECUTION):
            await store.get_execution(execution_id)
            events = (await store.read(execution_id, after_seq))[:limit]
        last = events[-1].seq if events and events[-1].seq is not None else after_seq
        return EventLog(
            execution_id=execution_id,
            events=[event.to_dict() for event in events],
            next_after_seq=last,
        )

    @tool("Cancel an execution", read_only=False, destructive=True, idempotent=True)
    async def cancel_execution(
        self,
        execution_id: ExecutionId,
        ctx: Context[Any, Any],
        reason: Annotated[
            str, Field(min_length=1, max_length=500, description="Why, for the event log.")
        ] = "cancelled by an assistant",
    ) -> Cancelled:
        """Stop a running or paused execution: steps in flight are abandoned and it
        ends as cancelled. Only do this when the user asks. Refused when it has
        already finished. Returns {execution_id, status}."""
        principal = self.services.caller(ctx, "operator", "cancel executions")
        engine = self.services.engine
        with tool_errors(
            not_found=NO_EXECUTION, conflict="it has already finished: nothing to cancel"
        ):
            await engine.cancel(execution_id, f"{reason} (by {principal.name})")
            summary = await engine.events.get_execution(execution_id)
        return Cancelled(execution_id=execution_id, status=summary.status)

    @tool("List executions", read_only=True)
    async def list_executions(
        self,
        ctx: Context[Any, Any],
        status: Annotated[Status | None, Field(description="Only this status.")] = None,
        limit: Annotated[int, Field(ge=1, le=500, description="At most this many.")] = 20,
    ) -> ExecutionList:
        """List executions, newest first, optionally of one status. Use
        it to find an execution id (a recent failure to explain, a paused one).
        Returns {executions: [{execution_id, playbook_path, playbook_version, status,
        started_at, finished_at, error}]}."""
        self.services.caller(ctx, "viewer", "read executions")
        store = self.services.engine.events
        with tool_errors():
            rows = await store.list_executions(status=status, limit=limit)
        return ExecutionList(
            executions=[
                ExecutionRow(
                    execution_id=row.execution_id,
                    playbook_path=row.playbook_path,
                    playbook_version=row.playbook_version,
                    status=row.status,
                    started_at=row.started_at,
                    finished_at=row.finished_at,
                    parent_execution_id=row.parent_execution_id,
                    error=row.error,
                )
                for row in rows
            ]
        )
