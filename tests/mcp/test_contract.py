"""The server's contract: every tool of INTERFACES.md with a description, schemas and
annotations; the argument names clients rely on; the group and read-only switches."""

from __future__ import annotations

import pytest

from mcp_server.errors import McpConfigError
from mcp_server.settings import McpSettings
from tests.mcp.conftest import HELLO, refused

GROUPS = {
    "catalog": {"list_playbooks", "get_playbook", "validate_playbook", "register_playbook"},
    "author": {"playbook_authoring_context", "generate_playbook", "dry_run_playbook"},
    "run": {
        "execute_playbook",
        "get_execution",
        "get_execution_events",
        "cancel_execution",
        "list_executions",
    },
    "learn": {
        "search_history",
        "find_similar_failures",
        "explain_failure",
        "step_statistics",
        "analytics_query",
    },
    "improve": {"suggest_policies", "list_proposals", "get_proposal", "request_review"},
    "humans": {"list_pending_approvals"},
}
CHANGING = {
    "register_playbook",
    "generate_playbook",
    "execute_playbook",
    "cancel_execution",
    "suggest_policies",
}


async def test_every_tool_has_a_description_schemas_and_annotations(connect):
    async with connect() as client:
        tools = (await client.list_tools()).tools
    assert {tool.name for tool in tools} == set().union(*GROUPS.values())
    for tool in tools:
        assert tool.description and len(tool.description) > 80, tool.name
        assert "Returns" in tool.description or "returns" in tool.description, tool.name
        assert tool.input_schema["type"] == "object", tool.name
        assert tool.input_schema["additionalProperties"] is False, tool.name
        for name, prop in tool.input_schema["properties"].items():
            assert prop.get("description"), f"{tool.name}.{name} has no description"
        assert tool.output_schema and tool.output_schema["type"] == "object", tool.name
        hints = tool.annotations
        assert hints is not None and hints.title, tool.name
        assert None not in (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint)
        assert hints.read_only_hint is (tool.name not in CHANGING), tool.name
    by_name = {tool.name: tool for tool in tools}
    assert by_name["execute_playbook"].annotations.destructive_hint is True
    assert by_name["cancel_execution"].annotations.destructive_hint is True
    assert by_name["register_playbook"].annotations.destructive_hint is False
    assert by_name["register_playbook"].annotations.idempotent_hint is True


async def test_argument_names_are_the_contract(connect):
    async with connect() as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    def arguments(name: str) -> set[str]:
        return set(tools[name].input_schema["properties"])

    assert arguments("validate_playbook") == {"yaml"}
    assert arguments("register_playbook") == {"yaml"}
    assert {"path", "workload", "version"} <= arguments("execute_playbook")
    assert tools["execute_playbook"].input_schema["required"] == ["path"]
    assert arguments("get_execution") == {"execution_id"}
    assert arguments("search_history") == {"query", "kind", "k", "filters"}


async def test_no_tool_can_decide_anything(connect):
    async with connect() as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
    for word in ("approve", "reject", "decide", "decision"):
        assert not [name for name in names if word in name], word


async def test_read_only_serves_only_tools_that_change_nothing(connect):
    settings = McpSettings.from_env({"NOETL_MCP_READ_ONLY": "1"})
    async with connect(settings) as client:
        tools = (await client.list_tools()).tools
        assert {tool.name for tool in tools} == set().union(*GROUPS.values()) - CHANGING
        assert all(tool.annotations.read_only_hint for tool in tools)
        message = await refused(client, "register_playbook", {"yaml": HELLO})
        assert "no tool 'register_playbook'" in message and "validate_playbook" in message


async def test_groups_can_be_switched_off(connect):
    settings = McpSettings.from_env({"NOETL_MCP_DISABLED_GROUPS": "run, Improve,author"})
    async with connect(settings) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        # Resources and prompts stay: they only read.
        assert len((await client.list_prompts()).prompts) == 3
    assert names == GROUPS["catalog"] | GROUPS["learn"] | GROUPS["humans"]


@pytest.mark.parametrize(
    ("environ", "complaint"),
    [
        ({"NOETL_MCP_DISABLED_GROUPS": "catalog,approvals"}, "unknown tool group(s) approvals"),
        ({"NOETL_MCP_READ_ONLY": "maybe"}, "NOETL_MCP_READ_ONLY='maybe' is not a switch"),
    ],
)
def test_settings_that_cannot_be_read_say_so(environ, complaint):
    with pytest.raises(McpConfigError, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        McpSettings.from_env(environ)
