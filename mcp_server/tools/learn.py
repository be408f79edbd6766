"""Learn tools: search execution history, find similar failures, explain a failure, step
statistics and read-only SQL over the analytics store."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from mcp_server.errors import tool_errors
from mcp_server.models import (
    Explanation,
    Hit,
    QueryResult,
    SearchResult,
    SimilarFailures,
    StepStatistics,
)
from mcp_server.registry import Group, tool

Kind = Literal["failures", "steps", "executions", "playbooks"]
FilterValue = str | int | bool
NO_EXECUTION = "list_executions shows recent execution ids (list_executions status=failed)"


class LearnTools(Group):
    name = "learn"

    @tool("Search execution history", read_only=True)
    async def search_history(
        self,
        query: Annotated[
            str, Field(min_length=1, max_length=4000, description="What to look for, in words.")
        ],
        ctx: Context[Any, Any],
        kind: Annotated[
            Kind | None, Field(description="One kind of document; all four when omitted.")
        ] = None,
        k: Annotated[int, Field(ge=1, le=100, description="How many hits.")] = 10,
        filters: Annotated[
            dict[str, FilterValue] | None,
            Field(
                description="Exact-match filters: playbook_path, execution_id, step, status, "
                "tool_kind, error_kind, error_code, final, playbook_version."
            ),
        ] = None,
    ) -> SearchResult:
        """Search past failures, step runs, executions and playbooks by meaning (not by
        keywords): "timeouts calling the billing API", "playbooks that load CSV files".
        Use it to find precedents before writing or fixing a playbook. Returns {query,
        hits}, best first, each with kind, score, playbook_path, execution_id, step,
        text and links. The first search of a process loads the embedding model."""
        self.services.caller(ctx, "viewer", "search execution history")
        await ctx.report_progress(0, 2, "indexing what is new")
        with tool_errors():
            history = await self.services.search_history()
            await ctx.report_progress(1, 2, "searching")
            hits = await history.search(query, kind=kind, filters=filters or {}, k=k)
        await ctx.report_progress(2, 2, f"{len(hits)} hit(s)")
        return SearchResult(query=query, hits=[Hit.model_validate(h.to_dict()) for h in hits])

    @tool("Find similar failures", read_only=True)
    async def find_similar_failures(
        self,
        ctx: Context[Any, Any],
        execution_id: Annotated[
            str | None, Field(description="A failed execution: find failures like its own.")
        ] = None,
        text: Annotated[
            str | None,
            Field(max_length=4000, description="Or an error message to find failures like it."),
        ] = None,
        k: Annotated[int, Field(ge=1, le=50, description="How many.")] = 5,
    ) -> SimilarFailures:
        """Find past failures most like a failed execution's (give execution_id) or like
        an error message (give text), across every playbook. Use it after a failure to
        see whether it happened before and how it went. Returns {failure (the
        execution's own), similar: [{score, playbook_path, execution_id, step, text}]}."""
        self.services.caller(ctx, "viewer", "search execution history")
        if (execution_id is None) == (text is None or not text.strip()):
            raise ToolError(
                "give exactly one of execution_id (a failed execution) or text (an error message)"
            )
        with tool_errors(not_found=NO_EXECUTION):
            history = await self.services.search_history()
            if execution_id is not None:
                found = await history.failure_and_similar(execution_id, k=k)
                return SimilarFailures.model_validate(found)
            hits = await history.similar_failures(text=text, k=k)
        return SimilarFailures(query=text, similar=[Hit.model_validate(h.to_dict()) for h in hits])

    @tool("Explain a failure", read_only=True, open_world=True)
    async def explain_failure(
        self,
        execution_id: Annotated[str, Field(min_length=1, description="A failed execution.")],
        ctx: Context[Any, Any],
    ) -> Explanation:
        """Explain why an execution failed: the failed step with its inputs (secrets
        masked) and error, similar past failures and how they were resolved, the likely
        root causes ranked with their evidence, and suggested fixes (in prose too when a
        model is configured). Use it on a failed execution before proposing a change.
        Returns {summary, root_cause, causes, failure, similar, resolutions,
        suggested_fixes, notes}; an execution that did not fail says so (failed false)."""
        self.services.caller(ctx, "viewer", "explain executions")
        await ctx.report_progress(0, 1, "gathering the evidence")
        with tool_errors(not_found=NO_EXECUTION):
            explanation = await self.services.explainer().explain(execution_id)
        await ctx.report_progress(1, 1, "explained")
        return Explanation.model_validate(explanation.to_dict())

    @tool("Step statistics", read_only=True)
    async def step_statistics(
        self,
        playbook: Annotated[str, Field(min_length=1, description="Catalog path.")],
        ctx: Context[Any, Any],
        step: Annotated[str | None, Field(description="One step; every step when omitted.")] = None,
    ) -> StepStatistics:
        """Statistics of a playbook's steps over every finished run: runs, failures by
        error class, attempts and success within k attempts, duration percentiles and
        resource use per worker pool. Use it to judge whether a retry, timeout or pool
        change would help. Returns {playbook, steps: [...]}."""
        self.services.caller(ctx, "viewer", "read analytics")
        with tool_errors():
            async with self.services.analytics() as analytics:
                if step is None:
                    found = await analytics.playbook_statistics(playbook)
                else:
                    found = [await analytics.step_statistics(playbook, step)]
        return StepStatistics(playbook=playbook, steps=[stats.to_dict() for stats in found])

    @tool("Query analytics (read-only SQL)", read_only=True)
    async def analytics_query(
        self,
        sql: Annotated[
            str,
            Field(
                min_length=1,
                max_length=100_000,
                description="One SELECT, WITH ... SELECT, DESCRIBE TABLE or SHOW TABLES.",
            ),
        ],
        ctx: Context[Any, Any],
        max_rows: Annotated[int, Field(ge=1, le=10_000, description="Fail past this many.")] = 200,
        timeout: Annotated[float, Field(gt=0, le=60, description="Fail past these seconds.")] = 10,
    ) -> QueryResult:
        """Run read-only ClickHouse SQL over the analytics store (table events: one row
        per event with execution, playbook, step, type, status, attempt, durations,
        error class, pool). Use it for questions the other tools do not answer. Anything
        but one read statement is refused. Returns {columns, types, rows, row_count}."""
        self.services.caller(ctx, "viewer", "read analytics")
        with tool_errors():
            async with self.services.analytics() as analytics:
                result = await analytics.query(sql, max_rows=max_rows, timeout=timeout)
        return QueryResult.model_validate(result.to_dict())
