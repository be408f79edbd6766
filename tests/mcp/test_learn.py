"""Learn tools through the MCP client, on the real model and a real local index: search,
similar failures, explanations, step statistics and analytics SQL."""

from __future__ import annotations

from tests.mcp.conftest import FAILING, HELLO, call, refused

ELSEWHERE = FAILING.replace("mcp/load_orders", "mcp/sync_customers").replace(
    "name: load_orders", "name: sync_customers"
)


async def _failed_twice(client) -> tuple[str, str]:
    """Two playbooks that fail the same way; the ids of their executions."""
    ids = []
    for yaml in (FAILING, ELSEWHERE):
        entry = await call(client, "register_playbook", {"yaml": yaml})
        run = await call(client, "execute_playbook", {"path": entry["path"]})
        assert run["status"] == "failed"
        ids.append(run["execution_id"])
    return ids[0], ids[1]


async def test_search_similar_failures_and_explain(connect):
    async with connect() as client:
        await call(client, "register_playbook", {"yaml": HELLO})
        first, second = await _failed_twice(client)

        found = await call(
            client,
            "search_history",
            {"query": "cannot reach the database server", "kind": "failures", "k": 5},
        )
        assert found["query"] == "cannot reach the database server"
        assert {hit["execution_id"] for hit in found["hits"]} == {first, second}
        assert all(hit["kind"] == "failure" for hit in found["hits"])

        filtered = await call(
            client,
            "search_history",
            {"query": "warehouse", "filters": {"playbook_path": "mcp/sync_customers"}},
        )
        assert {hit["playbook_path"] for hit in filtered["hits"]} == {"mcp/sync_customers"}

        greeting = await call(
            client, "search_history", {"query": "say hello to a person", "kind": "playbooks"}
        )
        assert greeting["hits"][0]["playbook_path"] == "mcp/hello"

        similar = await call(client, "find_similar_failures", {"execution_id": second})
        assert similar["failure"]["execution_id"] == second
        assert [hit["execution_id"] for hit in similar["similar"]] == [first]
        by_text = await call(
            client, "find_similar_failures", {"text": "connection refused by db:5432", "k": 1}
        )
        assert len(by_text["similar"]) == 1 and by_text["query"]

        explained = await call(client, "explain_failure", {"execution_id": second})
        assert explained["failed"] is True and explained["execution_id"] == second
        assert explained["failure"]["step"] == "load"
        assert explained["root_cause"] is not None and explained["suggested_fixes"]
        assert first in {item["execution_id"] for item in explained["similar"]}
        assert "load" in explained["summary"]


async def test_explaining_a_success_says_there_is_nothing_to_explain(connect):
    async with connect() as client:
        await call(client, "register_playbook", {"yaml": HELLO})
        run = await call(client, "execute_playbook", {"path": "mcp/hello"})
        explained = await call(client, "explain_failure", {"execution_id": run["execution_id"]})
        assert explained["failed"] is False and "did not fail" in explained["summary"]


async def test_learn_tools_refuse_bad_input(connect):
    async with connect() as client:
        bad_kind = await refused(client, "search_history", {"query": "x", "kind": "logs"})
        assert "`kind`" in bad_kind and "search_history takes query" in bad_kind
        empty = await refused(client, "search_history", {"query": ""})
        assert "`query`" in empty
        both = await refused(client, "find_similar_failures", {"execution_id": "a", "text": "b"})
        assert "exactly one of execution_id" in both
        neither = await refused(client, "find_similar_failures", {})
        assert "exactly one of execution_id" in neither
        unknown = await refused(client, "explain_failure", {"execution_id": "nope"})
        assert "nope" in unknown and "list_executions" in unknown
        no_playbook = await refused(client, "step_statistics", {"playbook": ""})
        assert "`playbook`" in no_playbook
        no_sql = await refused(client, "analytics_query", {"sql": "SELECT 1", "timeout": 0})
        assert "`timeout`" in no_sql


async def test_step_statistics_and_read_only_sql(connect):
    async with connect() as client:
        first, _ = await _failed_twice(client)
        stats = await call(client, "step_statistics", {"playbook": "mcp/load_orders"})
        by_step = {row["step"]: row for row in stats["steps"]}
        assert by_step["load"]["runs"] == 1 and by_step["load"]["failed"] == 1
        one = await call(client, "step_statistics", {"playbook": "mcp/load_orders", "step": "load"})
        assert [row["step"] for row in one["steps"]] == ["load"]

        rows = await call(
            client,
            "analytics_query",
            {
                "sql": "SELECT execution_id, count() AS n FROM events "
                f"WHERE execution_id = '{first}' GROUP BY execution_id"
            },
        )
        assert rows["columns"] == ["execution_id", "n"] and rows["row_count"] == 1
        assert rows["rows"][0][0] == first and rows["rows"][0][1] > 3

        refused_sql = await refused(client, "analytics_query", {"sql": "DROP TABLE events"})
        assert "DROP" in refused_sql or "SELECT" in refused_sql
        too_many = await refused(
            client, "analytics_query", {"sql": "SELECT * FROM events", "max_rows": 1}
        )
        assert "1" in too_many
