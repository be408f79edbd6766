"""Run tools through the MCP client: execute with progress, follow, page events, cancel,
list."""

from __future__ import annotations

import anyio

from tests.mcp.conftest import FAILING, GATE, HELLO, call, refused


async def test_execute_waits_reports_progress_and_returns_the_result(connect):
    async with connect() as client:
        await call(client, "register_playbook", {"yaml": HELLO})
        progress: list[tuple[float, str | None]] = []
        reported = anyio.Event()

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append((done, message))
            reported.set()

        result = await client.call_tool(
            "execute_playbook",
            {"path": "mcp/hello", "workload": {"name": "ada"}},
            progress_callback=on_progress,
        )
        assert not result.is_error, result.content
        run = result.structured_content
        assert run["status"] == "completed" and run["finished"] is True
        assert run["result"] == {"greeting": "hello ada"}
        assert run["playbook_version"] == 1
        assert run["uri"] == f"execution://{run['execution_id']}"
        with anyio.fail_after(10):  # notifications may be handled after the result
            await reported.wait()
        assert progress == [(1, "step start success")]

        shown = await call(client, "get_execution", {"execution_id": run["execution_id"]})
        assert shown["status"] == "completed" and shown["result"] == {"greeting": "hello ada"}
        assert [(s["step"], s["status"]) for s in shown["steps"]] == [("start", "success")]


async def test_a_failed_execution_is_a_result_not_an_error(connect):
    async with connect() as client:
        await call(client, "register_playbook", {"yaml": FAILING})
        run = await call(client, "execute_playbook", {"path": "mcp/load_orders"})
        assert run["status"] == "failed" and run["finished"] is True
        assert "could not connect to the warehouse" in run["error"]["message"]
        failed = [s for s in run["steps"] if s["status"] != "success"]
        assert [s["step"] for s in failed] == ["load"]


async def test_events_page_in_order(connect):
    async with connect() as client:
        await call(client, "register_playbook", {"yaml": HELLO})
        run = await call(client, "execute_playbook", {"path": "mcp/hello"})
        execution_id = run["execution_id"]
        first = await call(
            client, "get_execution_events", {"execution_id": execution_id, "limit": 3}
        )
        assert [e["seq"] for e in first["events"]] == [1, 2, 3]
        assert first["events"][0]["event_type"] == "playbook.execution.requested"
        rest = await call(
            client,
            "get_execution_events",
            {"execution_id": execution_id, "after_seq": first["next_after_seq"]},
        )
        assert rest["events"][0]["seq"] == 4
        assert rest["events"][-1]["event_type"] == "playbook.processed"
        done = await call(
            client,
            "get_execution_events",
            {"execution_id": execution_id, "after_seq": rest["next_after_seq"]},
        )
        assert done["events"] == [] and done["next_after_seq"] == rest["next_after_seq"]


async def test_cancel_a_paused_execution_and_list_by_status(connect):
    async with connect() as client:
        await call(client, "register_playbook", {"yaml": GATE})
        await call(client, "register_playbook", {"yaml": HELLO})
        done = await call(client, "execute_playbook", {"path": "mcp/hello"})
        paused = await call(client, "execute_playbook", {"path": "mcp/gate"})
        assert paused["status"] == "paused" and paused["finished"] is False

        listed = await call(client, "list_executions", {"status": "paused"})
        assert [e["execution_id"] for e in listed["executions"]] == [paused["execution_id"]]
        every = await call(client, "list_executions", {"limit": 10})
        assert [e["execution_id"] for e in every["executions"]] == [
            paused["execution_id"],
            done["execution_id"],
        ]

        cancelled = await call(
            client,
            "cancel_execution",
            {"execution_id": paused["execution_id"], "reason": "not today"},
        )
        assert cancelled == {"execution_id": paused["execution_id"], "status": "cancelled"}
        again = await refused(client, "cancel_execution", {"execution_id": done["execution_id"]})
        assert "already finished" in again


async def test_bad_arguments_and_unknown_ids(connect):
    async with connect() as client:
        unknown = await refused(client, "execute_playbook", {"path": "mcp/none"})
        assert "list_playbooks" in unknown
        no_run = await refused(client, "get_execution", {"execution_id": "nope"})
        assert "nope" in no_run and "list_executions" in no_run
        events = await refused(client, "get_execution_events", {"execution_id": "nope"})
        assert "list_executions" in events
        bad_status = await refused(client, "list_executions", {"status": "exploded"})
        assert "`status`" in bad_status and "list_executions takes" in bad_status
        bad_workload = await refused(
            client, "execute_playbook", {"path": "mcp/hello", "workload": [1, 2]}
        )
        assert "`workload`" in bad_workload
        too_long = await refused(
            client, "execute_playbook", {"path": "mcp/hello", "wait_seconds": 9999}
        )
        assert "`wait_seconds`" in too_long
