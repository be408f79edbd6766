"""Author tools through the MCP client: the authoring context, server-side generation
with its dry run, dry runs of any YAML, and the draft gate on execute_playbook."""

from __future__ import annotations

import json

import anyio

from tests.mcp.conftest import HELLO, INVALID, call, refused

RATES = (
    "Grab the latest exchange rates from https://rates.example.com/latest and keep only "
    "currencies with rate above 1.5"
)


async def test_authoring_context_gives_schema_tool_kinds_rules_and_similar_playbooks(connect):
    async with connect() as client:
        bare = await call(client, "playbook_authoring_context")
        schema = json.loads(bare["playbook_schema"])
        assert "workflow" in schema["properties"]
        assert "python" in bare["tool_kinds"] and "http" in bare["tool_kinds"]
        assert "next" in bare["rules"] and bare["similar"] == []

        await call(client, "register_playbook", {"yaml": HELLO})
        found = await call(
            client, "playbook_authoring_context", {"description": "greet a person", "k": 1}
        )
        assert [hit["playbook_path"] for hit in found["similar"]] == ["mcp/hello"]


async def test_generate_dry_run_and_the_draft_gate(connect):
    async with connect() as client:
        progress: list[str | None] = []
        finished = anyio.Event()

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append(message)
            if done == total:
                finished.set()

        result = await client.call_tool(
            "generate_playbook",
            {"description": RATES, "path": "mcp/rates", "register": True},
            progress_callback=on_progress,
        )
        assert not result.is_error, result.content
        draft = result.structured_content
        assert draft["valid"] is True and draft["ok"] is True, draft["issues"]
        assert draft["dry_run"]["passed"] is True and draft["dry_run"]["stood_in"]
        assert "rates.example.com" in draft["yaml"]
        assert draft["gate"]["gated"] is True and "python" in draft["gate"]["code_tools"]
        assert draft["registered"] == {"path": "mcp/rates", "version": 1}
        with anyio.fail_after(10):  # notifications may be handled after the result
            await finished.wait()
        assert progress[-1] == "valid draft"

        # Registered but gated: it cannot run live until a person promotes it.
        message = await refused(client, "execute_playbook", {"path": "mcp/rates"})
        assert "generated draft" in message and "promote" in message
        assert "dry_run_playbook" in message

        dry = await call(client, "dry_run_playbook", {"yaml": draft["yaml"]})
        assert dry["passed"] is True and dry["status"] == "completed"
        assert {call_["kind"] for call_ in dry["stood_in"]} >= {"http"}


async def test_author_tools_refuse_bad_input(connect):
    async with connect() as client:
        empty = await refused(client, "generate_playbook", {"description": ""})
        assert "`description`" in empty
        kinds = await refused(
            client, "generate_playbook", {"description": RATES, "kinds": ["teleport"]}
        )
        assert "`kinds" in kinds
        invalid = await call(client, "dry_run_playbook", {"yaml": INVALID})
        assert invalid["passed"] is False and invalid["status"] == "invalid"
        assert "teleport" in invalid["error"]["message"]
        too_many = await refused(client, "playbook_authoring_context", {"k": 50})
        assert "`k`" in too_many
