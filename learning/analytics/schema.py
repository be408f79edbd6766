"""The analytics table: one row per stored event, flattened for ClickHouse SQL.

Table ``events`` of database ``noetl``. Each column is declared once here with its
ClickHouse type and the Arrow type of the exported tables, so the DDL, the Arrow schema
and the Parquet files always agree. Beyond the event envelope, a row carries what the
learners ask about, lifted out of the payload: the playbook of the execution, the step,
the tool, the worker pool, the error (kind, code, class, redacted message), the retry
reason and delay, and the resource use a tool run reported. Inputs and outputs are not
exported: analytics is about how runs went, not the data they moved.

A failure fills the error columns of every event that reports it: the failed attempt's
``retry.started`` (class from its reason) and ``retry.processed``, the tool run's final
``tool.processed``, in a loop the iteration's ``loop.iteration.finished`` (also
``cancelled`` for iterations stopped by another one's failure), and the ``step.finished``
and ``playbook.processed`` it ended. To count each failure once, count one event type:
``tool.processed`` (a tool run's final failure), ``retry.started`` (a retried attempt),
``step.finished`` (a failed step run), as ``statistics`` does.

The engine is ``ReplacingMergeTree`` ordered by ``(execution_id, seq)``: the exporter
never writes a row twice, and should two exporters race, the copies collapse on merge and
every query reads with ``final = 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DATABASE = "noetl"
TABLE = "events"
TABLES = frozenset({TABLE})


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its name, ClickHouse type and Arrow type name (see ``arrow_type``)."""

    name: str
    clickhouse: str
    arrow: str
    doc: str


COLUMNS: tuple[Column, ...] = (
    Column("position", "UInt64", "uint64", "global position in the event store"),
    Column("execution_id", "String", "string", "execution the event belongs to"),
    Column("seq", "UInt64", "uint64", "order of the event within its execution"),
    Column("event_id", "String", "string", "unique id within the execution"),
    Column("event_type", "LowCardinality(String)", "string", "canonical dot name"),
    Column("timestamp", "DateTime64(6, 'UTC')", "timestamp", "when it happened (UTC)"),
    Column("playbook_path", "String", "string", "catalog path of the playbook"),
    Column("playbook_version", "Nullable(UInt32)", "uint32", "catalog version"),
    Column("step", "Nullable(String)", "string", "step name"),
    Column("step_run_id", "Nullable(String)", "string", "step run (`step#n`)"),
    Column("entity_type", "Nullable(String)", "string", "playbook, step, tool, retry, ..."),
    Column("entity_id", "Nullable(String)", "string", "what the event is about"),
    Column("parent_id", "Nullable(String)", "string", "enclosing entity"),
    Column("iteration", "Nullable(Int64)", "int64", "loop index (loop iteration, tool events)"),
    Column(
        "attempt",
        "Nullable(UInt32)",
        "uint32",
        "attempt number (tool, retry, loop.iteration.finished events)",
    ),
    Column("status", "Nullable(String)", "string", "in_progress, success, error, ..."),
    Column("duration_ms", "Nullable(Int64)", "int64", "duration the event reports"),
    Column("tool", "Nullable(String)", "string", "tool name (tool and retry events)"),
    Column("tool_kind", "Nullable(String)", "string", "tool kind: http, python, ..."),
    Column("pool", "Nullable(String)", "string", "worker pool that ran the tool"),
    Column("final", "Nullable(Bool)", "bool", "tool.processed: false for inner pipeline tools"),
    Column("attempts", "Nullable(UInt32)", "uint32", "tool.processed: attempts it took"),
    Column("action", "Nullable(String)", "string", "tool.processed: policy decision"),
    Column("rule", "Nullable(String)", "string", "tool.processed: the rule that decided"),
    Column("delay_ms", "Nullable(Int64)", "int64", "retry.started: delay before it"),
    Column("reason", "Nullable(String)", "string", "retry events: `kind_code` that caused it"),
    Column("http_status", "Nullable(Int32)", "int32", "HTTP status of the tool run"),
    Column("error_kind", "Nullable(String)", "string", "timeout, connection, http, ..."),
    Column("error_code", "Nullable(String)", "string", "status code, exception type, ..."),
    Column(
        "error_class",
        "Nullable(String)",
        "string",
        "http_503, timeout, KeyError, ...; set, like every error column, on each event "
        "reporting the failure (retry, tool.processed, loop.iteration.finished, "
        "step.finished, playbook.processed): count one event_type to count it once",
    ),
    Column("error_message", "Nullable(String)", "string", "error message, secrets masked"),
    Column("error_retryable", "Nullable(Bool)", "bool", "whether the tool deemed it transient"),
    Column("wall_ms", "Nullable(Float64)", "float64", "tool.processed: elapsed, all attempts"),
    Column("cpu_ms", "Nullable(Float64)", "float64", "tool.processed: CPU time"),
    Column("peak_rss_kb", "Nullable(UInt64)", "uint64", "tool.processed: memory high-water"),
    Column("usage_scope", "Nullable(String)", "string", "tool (measured) or process (bound)"),
)
COLUMN_NAMES = tuple(column.name for column in COLUMNS)


def create_table_sql(database: str = DATABASE) -> str:
    """The ``CREATE TABLE IF NOT EXISTS`` statement of the events table."""
    columns = ",\n  ".join(f"`{c.name}` {c.clickhouse} COMMENT '{c.doc}'" for c in COLUMNS)
    return (
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{TABLE}` (\n  {columns}\n)"
        " ENGINE = ReplacingMergeTree ORDER BY (execution_id, seq)"
    )


def arrow_schema() -> Any:
    """The ``pyarrow.Schema`` of exported tables (imports pyarrow when called)."""
    import pyarrow as pa

    types: dict[str, Any] = {
        "uint64": pa.uint64(),
        "uint32": pa.uint32(),
        "int64": pa.int64(),
        "int32": pa.int32(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "string": pa.string(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }
    return pa.schema(
        [
            pa.field(
                c.name,
                types[c.arrow],
                nullable=c.clickhouse.startswith("Nullable"),
                metadata={"doc": c.doc},
            )
            for c in COLUMNS
        ]
    )
