"""Catalog tools through the MCP client: list, read, validate, register."""

from __future__ import annotations

from tests.mcp.conftest import HELLO, INVALID, call, refused


async def test_register_then_list_and_read(connect):
    async with connect() as client:
        assert await call(client, "list_playbooks") == {"playbooks": []}

        registered = await call(client, "register_playbook", {"yaml": HELLO})
        assert registered == {
            "path": "mcp/hello",
            "version": 1,
            "name": "hello",
            "uri": "playbook://mcp/hello@1",
        }
        again = await call(client, "register_playbook", {"yaml": HELLO})
        assert again["version"] == 1  # the same YAML keeps its version
        changed = await call(client, "register_playbook", {"yaml": HELLO.replace("world", "you")})
        assert changed["version"] == 2

        listed = await call(client, "list_playbooks")
        assert [(p["path"], p["version"], p["description"]) for p in listed["playbooks"]] == [
            ("mcp/hello", 2, "Greet someone by name")
        ]
        first = await call(client, "get_playbook", {"path": "mcp/hello", "version": 1})
        assert first["content"] == HELLO and first["uri"] == "playbook://mcp/hello@1"
        latest = await call(client, "get_playbook", {"path": "mcp/hello"})
        assert latest["version"] == 2 and "you" in latest["content"]


async def test_validate_reports_every_issue_with_path_message_and_hint(connect):
    async with connect() as client:
        valid = await call(client, "validate_playbook", {"yaml": HELLO})
        assert valid == {
            "valid": True,
            "path": "mcp/hello",
            "name": "hello",
            "steps": 1,
            "tool_kinds": ["python"],
            "issues": [],
        }

        invalid = await call(client, "validate_playbook", {"yaml": INVALID})
        assert invalid["valid"] is False and invalid["path"] is None
        paths = {issue["path"] for issue in invalid["issues"]}
        assert any("kind" in path for path in paths), invalid["issues"]
        for issue in invalid["issues"]:
            assert issue["message"] and issue["line"] is not None
        assert any(issue["hint"] for issue in invalid["issues"])

        not_yaml = await call(client, "validate_playbook", {"yaml": "workflow: [unclosed"})
        assert not_yaml["valid"] is False
        assert "not valid YAML" in not_yaml["issues"][0]["message"]


async def test_register_refuses_an_invalid_playbook_saying_how_to_fix_it(connect):
    async with connect() as client:
        message = await refused(client, "register_playbook", {"yaml": INVALID})
        assert "playbook is invalid" in message
        assert "teleport" in message and "hint:" in message
        assert "validate_playbook" in message  # the way forward
        assert (await call(client, "list_playbooks"))["playbooks"] == []


async def test_bad_arguments_and_unknown_paths_are_tool_errors(connect):
    async with connect() as client:
        missing = await refused(client, "register_playbook", {})
        assert "`yaml`: Field required" in missing
        assert "register_playbook takes yaml (string, required)" in missing

        wrong_name = await refused(client, "validate_playbook", {"content": HELLO})
        assert "no argument `content`" in wrong_name
        assert "takes yaml (string, required)" in wrong_name

        unknown = await refused(client, "get_playbook", {"path": "mcp/none"})
        assert "mcp/none" in unknown and "list_playbooks" in unknown

        await call(client, "register_playbook", {"yaml": HELLO})
        no_version = await refused(client, "get_playbook", {"path": "mcp/hello", "version": 7})
        assert "list_playbooks" in no_version

        listing = await refused(client, "list_playbooks", {"limit": 5})
        assert "no argument `limit`" in listing and "takes none" in listing

        bad_version = await refused(client, "get_playbook", {"path": "mcp/hello", "version": 0})
        assert "`version`" in bad_version
