"""Resources and prompts through the MCP client."""

from __future__ import annotations

import json

import pytest
from mcp import MCPError

from tests.mcp.conftest import HELLO, call


async def test_playbook_resource_latest_and_by_version(connect):
    async with connect() as client:
        await call(client, "register_playbook", {"yaml": HELLO})
        await call(client, "register_playbook", {"yaml": HELLO.replace("world", "you")})
        latest = await client.read_resource("playbook://mcp/hello")
        assert "you" in latest.contents[0].text
        assert latest.contents[0].mime_type == "application/yaml"
        first = await client.read_resource("playbook://mcp/hello@1")
        assert first.contents[0].text == HELLO
        with pytest.raises(MCPError, match="mcp/none"):
            await client.read_resource("playbook://mcp/none")
        with pytest.raises(MCPError):
            await client.read_resource("playbook://mcp/hello@9")


async def test_execution_proposal_and_schema_resources(connect):
    async with connect() as client:
        await call(client, "register_playbook", {"yaml": HELLO})
        run = await call(client, "execute_playbook", {"path": "mcp/hello"})
        read = await client.read_resource(run["uri"])
        state = json.loads(read.contents[0].text)
        assert state["execution_id"] == run["execution_id"] and state["status"] == "completed"
        with pytest.raises(MCPError, match="nope"):
            await client.read_resource("execution://nope")
        with pytest.raises(MCPError, match="p-missing-1"):
            await client.read_resource("proposal://p-missing-1")

        schema = json.loads((await client.read_resource("schema://playbook")).contents[0].text)
        assert {"apiVersion", "kind", "metadata", "workflow"} <= set(schema["properties"])

        listed = await client.list_resources()
        assert [str(r.uri) for r in listed.resources] == ["schema://playbook"]
        templates = await client.list_resource_templates()
        assert sorted(t.uri_template for t in templates.resource_templates) == [
            "execution://{execution_id}",
            "playbook://{+path}",
            "proposal://{proposal_id}",
        ]


async def test_prompts_name_the_tools_to_call(connect):
    async with connect() as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        assert set(prompts) == {"diagnose_failure", "author_playbook", "review_policies"}
        assert all(p.description for p in prompts.values())

        diagnose = await client.get_prompt("diagnose_failure", {"execution_id": "e-1"})
        text = diagnose.messages[0].content.text
        assert "e-1" in text and "explain_failure" in text and "find_similar_failures" in text

        author = await client.get_prompt("author_playbook", {"description": "fetch the rates"})
        text = author.messages[0].content.text
        assert "fetch the rates" in text and "validate_playbook" in text
        assert "schema://playbook" in text

        review = await client.get_prompt("review_policies", {"playbook": "mcp/hello"})
        text = review.messages[0].content.text
        assert "mcp/hello" in text and "request_review" in text
        assert "cannot approve" in text
        everything = await client.get_prompt("review_policies")
        assert "every playbook" in everything.messages[0].content.text

        with pytest.raises(MCPError):
            await client.get_prompt("diagnose_failure", {})
        with pytest.raises(MCPError):
            await client.get_prompt("approve_everything", {})
