"""`noetl-agent mcp` as a real subprocess, driven by the SDK's stdio client."""

from __future__ import annotations

import os
import time

from mcp import Client, StdioServerParameters
from mcp.types import TextResourceContents

from tests.mcp.conftest import FAILING, HELLO, call, refused
from tests.processes import NOETL_AGENT, cli


async def test_a_session_over_stdio(tmp_path):
    env = dict(os.environ, NOETL_HOME=str(tmp_path / "home"))
    params = StdioServerParameters(command=str(NOETL_AGENT), args=["mcp"], env=env)
    started = time.monotonic()
    async with Client(params) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        ready = time.monotonic() - started
        assert {"validate_playbook", "execute_playbook", "request_review"} <= tools
        assert ready < 30  # the benchmark holds the real goal (evals/bench/mcp.py)

        assert (await call(client, "validate_playbook", {"yaml": HELLO}))["valid"] is True
        await call(client, "register_playbook", {"yaml": HELLO})
        await call(client, "register_playbook", {"yaml": FAILING})
        run = await call(
            client, "execute_playbook", {"path": "mcp/hello", "workload": {"name": "stdio"}}
        )
        assert run["result"] == {"greeting": "hello stdio"}
        failed = await call(client, "execute_playbook", {"path": "mcp/load_orders"})
        assert failed["status"] == "failed"
        shown = await call(client, "get_execution", {"execution_id": failed["execution_id"]})
        assert shown["error"]["message"] == failed["error"]["message"]
        yaml = await client.read_resource("playbook://mcp/hello@1")
        content = yaml.contents[0]
        assert isinstance(content, TextResourceContents) and content.text == HELLO
        assert "execution_id" in await refused(client, "get_execution", {})

    # What the session stored is the embedded stack's, as the CLI sees it.
    listed = cli(env, "executions", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert run["execution_id"] in listed.stdout and failed["execution_id"] in listed.stdout


async def test_the_read_only_switch_over_stdio(tmp_path):
    env = dict(
        os.environ,
        NOETL_HOME=str(tmp_path / "home"),
        NOETL_MCP_READ_ONLY="1",
        NOETL_MCP_DISABLED_GROUPS="author",
    )
    params = StdioServerParameters(command=str(NOETL_AGENT), args=["mcp"], env=env)
    async with Client(params) as client:
        tools = (await client.list_tools()).tools
        assert tools and all(tool.annotations and tool.annotations.read_only_hint for tool in tools)
        names = {tool.name for tool in tools}
        assert "register_playbook" not in names and "execute_playbook" not in names
        assert "dry_run_playbook" not in names  # the author group is off
        assert {"validate_playbook", "get_execution", "request_review"} <= names
        assert "no tool 'register_playbook'" in await refused(
            client, "register_playbook", {"yaml": HELLO}
        )


async def test_settings_that_cannot_be_read_stop_the_command(tmp_path):
    env = dict(os.environ, NOETL_HOME=str(tmp_path / "home"), NOETL_MCP_DISABLED_GROUPS="nothing")
    done = cli(env, "mcp")
    assert done.returncode == 2
    assert "unknown tool group(s) nothing" in done.stderr
