"""Prompts: ready-made instructions for the three jobs an assistant does most here,
naming the tools to call in order."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field


def register_prompts(server: MCPServer) -> None:
    """Add diagnose_failure, author_playbook and review_policies."""

    @server.prompt(title="Diagnose a failed execution")
    def diagnose_failure(
        execution_id: Annotated[str, Field(description="The failed execution's id.")],
    ) -> str:
        """Find out why an execution failed and what would fix it."""
        return (
            f"Execution {execution_id} failed. Find out why and what would fix it.\n"
            f"1. Call get_execution with execution_id={execution_id!r} to see the failed step "
            "and its error.\n"
            "2. Call explain_failure on it: the likely root cause, with its evidence.\n"
            "3. Call find_similar_failures on it: did this happen before, and how was it "
            "resolved?\n"
            "4. If the cause is transient or a limit (timeouts, rate limits, a busy pool), "
            "call suggest_policies for its playbook and request_review for a proposal that "
            "fits; a person decides it, you cannot.\n"
            "Answer with the root cause, the evidence for it, and the fix you recommend."
        )

    @server.prompt(title="Write a playbook")
    def author_playbook(
        description: Annotated[str, Field(description="What the playbook should do.")],
    ) -> str:
        """Write, validate and register a playbook from a description."""
        return (
            f"Write a noetl playbook that does this: {description}\n"
            "1. Read the resource schema://playbook (the language's JSON Schema) and call "
            "search_history with kind='playbooks' to find similar playbooks to start from.\n"
            "2. Write the YAML (apiVersion noetl.io/v2, kind Playbook, metadata with name and "
            "path, workload, workflow of steps with tools and next arcs).\n"
            "3. Call validate_playbook with the YAML; fix every issue at its path as its hint "
            "says until it is valid.\n"
            "4. Show the user the YAML; only when they agree, call register_playbook, then "
            "execute_playbook."
        )

    @server.prompt(title="Review policy proposals")
    def review_policies(
        playbook: Annotated[
            str, Field(description="A catalog path, or 'all' for every playbook.")
        ] = "all",
    ) -> str:
        """Summarise the pending policy proposals for the person who decides them."""
        scope = "every playbook" if playbook == "all" else f"the playbook {playbook}"
        target = "" if playbook == "all" else f" with playbook={playbook!r}"
        return (
            f"Prepare the policy proposals of {scope} for a human reviewer.\n"
            f"1. Call suggest_policies{target} to raise what the learners see now.\n"
            "2. Call list_proposals with status='pending'; for each, call get_proposal and "
            "read its diff and evidence (counts, rates, similar past failures, expected "
            "effect).\n"
            "3. For each, say in two sentences what it changes and whether the evidence is "
            "strong, and give the link from request_review.\n"
            "You cannot approve or reject proposals; the person decides in the review queue."
        )
