"""The AnalyticsStore port, run on every transport (chDB; a ClickHouse server when set)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from learning.analytics.errors import AnalyticsUnavailable, QueryFailed, QueryLimitExceeded
from learning.analytics.export import to_arrow
from learning.analytics.schema import COLUMN_NAMES, TABLE
from learning.analytics.store import ClickHouseStore


def _row(execution_id: str, seq: int, **fields: object) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(COLUMN_NAMES)
    row.update(
        position=seq,
        execution_id=execution_id,
        seq=seq,
        event_id=f"{execution_id}:{seq}",
        event_type="tool.processed",
        timestamp=datetime(2026, 11, 30, 10, 0, seq, tzinfo=UTC),
        playbook_path="shop/orders",
    )
    row.update(fields)
    return row


def test_schema_is_created_once_and_rows_go_in_and_out(store: ClickHouseStore) -> None:
    store.ensure_schema()
    store.ensure_schema()  # safe to repeat
    written = store.insert(
        to_arrow([_row("e1", 1, pool="gpu", wall_ms=12.5), _row("e1", 2, final=True)])
    )
    assert written == 2
    table = store.query(
        f"SELECT seq, pool, wall_ms, final, timestamp FROM {TABLE}"
        " WHERE execution_id = {id:String} ORDER BY seq",
        {"id": "e1"},
    )
    rows = table.to_pylist()
    assert [r["seq"] for r in rows] == [1, 2]
    assert rows[0]["pool"] == "gpu" and rows[0]["wall_ms"] == 12.5
    assert rows[1]["final"] is True and rows[1]["pool"] is None
    assert rows[0]["timestamp"] == datetime(2026, 11, 30, 10, 0, 1, tzinfo=UTC)
    assert store.insert(to_arrow([])) == 0


def test_a_row_written_twice_is_read_once(store: ClickHouseStore) -> None:
    store.ensure_schema()
    store.insert(to_arrow([_row("e1", 1)]))
    store.insert(to_arrow([_row("e1", 1)]))  # two exporters racing
    count = store.query(f"SELECT count() AS n FROM {TABLE}").column("n")[0].as_py()
    assert count == 1


def test_explain_ast_parses_without_running(store: ClickHouseStore) -> None:
    tree = store.explain_ast("SELECT * FROM file('/nonexistent/never-read.csv')")
    assert "Function file" in tree
    with pytest.raises(QueryFailed, match=r"(?i)syntax"):
        store.explain_ast("SELEC 1")


def test_errors_of_clickhouse_are_translated(store: ClickHouseStore) -> None:
    store.ensure_schema()
    with pytest.raises(QueryFailed, match="nosuch") as failed:
        store.query(f"SELECT nosuch FROM {TABLE}")
    assert not isinstance(failed.value, QueryLimitExceeded)
    limits = {"max_result_rows": 5, "result_overflow_mode": "throw"}
    with pytest.raises(QueryLimitExceeded, match="limit"):
        store.query("SELECT number FROM numbers(50)", settings=limits)


def test_chdb_refuses_a_second_folder_in_one_process(tmp_path: Path) -> None:
    first = ClickHouseStore.embedded(tmp_path / "one")
    try:
        with pytest.raises(AnalyticsUnavailable, match="one folder per process"):
            ClickHouseStore.embedded(tmp_path / "two")
    finally:
        first.close()
    second = ClickHouseStore.embedded(tmp_path / "two")  # fine once the first is closed
    second.close()


def test_an_unreachable_server_is_unavailable_without_showing_the_password() -> None:
    with pytest.raises(AnalyticsUnavailable) as failed:
        ClickHouseStore.server("http://reader:s3cret-pw@127.0.0.1:9/")
    message = str(failed.value)
    assert "s3cret-pw" not in message and "reader:***@127.0.0.1:9" in message
    assert "NOETL_CLICKHOUSE_URL" in message


def test_exported_tables_have_the_declared_schema() -> None:
    table = to_arrow([_row("e1", 1)])
    assert table.column_names == list(COLUMN_NAMES)
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert not table.schema.field("execution_id").nullable
