"""Author tools: what a model needs to write a playbook itself, server-side generation
from a description, and dry runs with every side effect stood in.

A generated draft that runs code (python, shell, SQL commands) is gated: it can be
registered, but ``execute_playbook`` refuses it until a human operator promotes it;
``dry_run_playbook`` never runs anything for real, so it is never gated.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from mcp_server.errors import tool_errors
from mcp_server.models import AuthoringContext, Draft, DryRunReport, Hit
from mcp_server.registry import Group, tool

Kind = Literal[
    "python", "http", "postgres", "duckdb", "playbook", "workbook", "shell", "noop", "approval"
]
Yaml = Annotated[
    str, Field(min_length=1, max_length=1_000_000, description="The playbook's full YAML text.")
]


class AuthorTools(Group):
    name = "author"

    @tool("Playbook authoring context", read_only=True)
    async def playbook_authoring_context(
        self,
        ctx: Context[Any, Any],
        description: Annotated[
            str | None,
            Field(
                max_length=10_000,
                description="What the playbook should do, to find "
                "similar playbooks in the catalog.",
            ),
        ] = None,
        k: Annotated[int, Field(ge=0, le=10, description="How many similar playbooks.")] = 3,
    ) -> AuthoringContext:
        """Everything needed to write a playbook yourself: the JSON Schema of the language,
        each tool kind's fields and result, the rules of the language, and the catalog
        playbooks most similar to the description (with their YAML) to start from. Use
        it before writing YAML, then validate_playbook. Returns {playbook_schema, tool_kinds,
        rules, similar}."""
        self.services.caller(ctx, "viewer", "read the catalog")
        from noetl_agent.generation import prompts

        similar: list[Hit] = []
        if description and description.strip() and k:
            with tool_errors():
                history = await self.services.search_history()
                hits = await history.similar_playbooks(description, k=k)
            similar = [Hit.model_validate(hit.to_dict()) for hit in hits]
        return AuthoringContext(
            playbook_schema=prompts.schema_text(),
            tool_kinds=prompts.tool_catalog(),
            rules=prompts.RULES,
            similar=similar,
        )

    @tool("Generate a playbook", read_only=False, destructive=False, open_world=True)
    async def generate_playbook(
        self,
        description: Annotated[
            str, Field(min_length=1, max_length=10_000, description="What it should do.")
        ],
        ctx: Context[Any, Any],
        path: Annotated[str | None, Field(description="Catalog path for the draft.")] = None,
        name: Annotated[str | None, Field(description="metadata.name of the draft.")] = None,
        kinds: Annotated[
            list[Kind] | None, Field(description="The only tool kinds it may use.")
        ] = None,
        workload: Annotated[
            dict[str, Any] | None, Field(description="Workload inputs for the dry run.")
        ] = None,
        register: Annotated[
            bool, Field(description="Register the draft in the catalog when it is valid.")
        ] = False,
    ) -> Draft:
        """Generate a playbook server-side from a description: similar playbooks are
        retrieved, the draft is written (by the configured model, else the offline
        planner), validated, repaired and dry-run with stand-ins for every side effect.
        Use it when the user describes a workflow in words. Returns {yaml, valid, ok,
        issues, dry_run, unmapped (what could not be turned into steps), gate,
        registered, notes}. A draft that runs code is gated: a human operator must
        promote it before execute_playbook runs it."""
        from noetl_agent.generation.pipeline import Constraints
        from noetl_agent.generation.service import generate_on

        principal = self.services.caller(ctx, "operator", "generate playbooks")
        history = self.services.history
        await ctx.report_progress(0, 1, "writing, validating and dry-running the draft")
        with tool_errors():
            constraints = Constraints(
                name=name,
                path=path,
                kinds=frozenset(kinds) if kinds else None,
                workload=dict(workload or {}),
            )
            draft = await generate_on(
                self.services.engine,
                description,
                constraints,
                principal=principal,
                register=register,
                history=history,
                credentials=history.credentials if history is not None else (),
            )
        await ctx.report_progress(1, 1, "valid draft" if draft.valid else "draft has issues")
        return Draft.model_validate(draft.to_dict())

    @tool("Dry-run a playbook", read_only=True)
    async def dry_run_playbook(
        self,
        yaml: Yaml,
        ctx: Context[Any, Any],
        workload: Annotated[
            dict[str, Any] | None, Field(description="Workload inputs for the run.")
        ] = None,
        fixtures: Annotated[
            dict[str, Any] | None,
            Field(description="Step name → the output to use for it instead of a stand-in."),
        ] = None,
    ) -> DryRunReport:
        """Run playbook YAML with every side effect replaced by a stand-in (no HTTP call,
        SQL, shell or Python runs for real; approvals are approved), in memory: nothing is
        registered or stored. Use it to check the wiring, templates and routing of a
        playbook before registering or running it. Returns {passed, status, result,
        error, steps, stood_in, warnings}."""
        from noetl_agent.generation.dryrun import dry_run

        self.services.caller(ctx, "viewer", "dry-run playbooks")
        await ctx.report_progress(0, 1, "dry run")
        with tool_errors():
            report = await dry_run(
                yaml,
                workload=workload or {},
                recorded=fixtures or {},
                catalog=self.services.engine.catalog,
            )
        await ctx.report_progress(1, 1, report.status)
        return DryRunReport.model_validate(report.to_dict())
