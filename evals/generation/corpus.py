"""The generation eval's tasks: realistic descriptions, simple first, each with its checks.

Every task names the tool kinds and the structure its playbook must have (a loop, a
fan-out to parallel steps, a branch on a condition, a retry policy). Tasks whose words
point at ``{api}`` run live against the eval's local HTTP service (:mod:`.service`), and
their ``expect`` says what the execution's result must hold. The first half (``simple``)
is one or two linear actions; the second half is ETL with quality gates and human
review, API fan-out with retries, loops with aggregation, sub-playbooks and branching.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Structure = str  # loop | fan_out | branch | retry
Expect = Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class Task:
    """One description and what its playbook must be."""

    text: str
    kinds: frozenset[str]
    structure: frozenset[Structure] = frozenset()
    expect: Expect | None = None  # the live result's check, for tasks run against {api}
    simple: bool = True


def task(
    text: str,
    kinds: str,
    structure: str = "",
    expect: Expect | None = None,
    *,
    simple: bool = True,
) -> Task:
    return Task(text, frozenset(kinds.split()), frozenset(structure.split()), expect, simple=simple)


def _rows(result: Any) -> list[Any]:
    if isinstance(result, dict):
        for key in ("rows", "json"):
            if isinstance(result.get(key), list):
                return list(result[key])
    return list(result) if isinstance(result, list) else []


SIMPLE = [
    task(
        "Fetch {api}/items",
        "http",
        expect=lambda r: r["status_code"] == 200 and len(r["json"]) == 4,
    ),
    task(
        "Download the product list from {api}/items and compute the average price",
        "http python",
        expect=lambda r: r["average_price"] == 5.0,
    ),
    task(
        "Get the orders from {api}/orders and count them",
        "http python",
        expect=lambda r: r["count"] == 5,
    ),
    task(
        "Pull {api}/orders and sum the amount",
        "http python",
        expect=lambda r: r["total_amount"] == 150.0,
    ),
    task(
        "Read {api}/items and keep only items with price above 4",
        "http python",
        expect=lambda r: sorted(i["name"] for i in _rows(r)) == ["cake", "pie"],
    ),
    task(
        "Fetch {api}/items and sort them by price descending",
        "http python",
        expect=lambda r: [i["price"] for i in _rows(r)] == [8.0, 6.0, 4.0, 2.0],
    ),
    task(
        "Get {api}/orders and find the maximum amount",
        "http python",
        expect=lambda r: r["max_amount"] == 50.0,
    ),
    task(
        "Retrieve {api}/items and take the top 2 by price",
        "http python",
        expect=lambda r: [i["name"] for i in _rows(r)] == ["cake", "pie"],
    ),
    task(
        "Post a heartbeat to {api}/hooks/heartbeat",
        "http",
        expect=lambda r: r["json"]["received"] is True,
    ),
    task(
        "Fetch {api}/orders and group them by region",
        "http python",
        expect=lambda r: r["by_region"] == {"north": 3, "south": 2},
    ),
    task(
        "Call {api}/health, retrying up to 3 times on transient errors",
        "http",
        "retry",
        expect=lambda r: r["json"]["ok"] is True,
    ),
    task(
        "Query the customers table in postgres using credential crm",
        "postgres",
    ),
    task(
        "Load sales.csv into the sales table with duckdb",
        "duckdb",
    ),
    task(
        "Run `SELECT 42 AS answer` in duckdb",
        "duckdb",
        expect=lambda r: r == [{"answer": 42}],
    ),
    task(
        "Execute the shell script `./rotate_logs.sh`",
        "shell",
    ),
    task(
        "Run the playbook etl/refresh_dimensions",
        "playbook",
    ),
    task(
        "Ask a human to approve the release",
        "approval",
        "branch",
    ),
    task(
        "Fetch {api}/items and deduplicate by category",
        "http python",
        expect=lambda r: r["count"] == 2,
    ),
    task(
        "Grab {api}/orders and work out the average amount",
        "http python",
        expect=lambda r: r["average_amount"] == 30.0,
    ),
    task(
        "Download {api}/items then send them to {api}/hooks/items",
        "http",
        expect=lambda r: r["json"]["received"] is True,
    ),
]

HARD = [
    task(
        "For each city in [Paris, Oslo, Lima] fetch {api}/weather/{city}, then compute the "
        "average temp",
        "http python",
        "loop",
        expect=lambda r: r["average_temp"] == 20.0,
        simple=False,
    ),
    task(
        "Fetch {api}/a and {api}/b in parallel, combine the results and post them to "
        "{api}/hooks/combined",
        "http noop",
        "fan_out",
        expect=lambda r: r["json"]["received"] is True,
        simple=False,
    ),
    task(
        "Get {api}/orders and sum the amount. If the total amount is above 100, notify "
        "{api}/hooks/big; otherwise notify {api}/hooks/small",
        "http python",
        "branch",
        expect=lambda r: r["json"]["received"] is True,
        simple=False,
    ),
    task(
        "Pull the orders from {api}/orders, keep only orders with amount above 20, and if "
        "there are more than 2 rows ask a manager to approve, then load them into the "
        "warehouse.orders table using credential warehouse",
        "http python approval postgres",
        "branch",
        simple=False,
    ),
    task(
        "Fetch {api}/flaky and retry up to 5 times with exponential backoff, then count the items",
        "http python",
        "retry",
        expect=lambda r: r["count"] == 2,
        simple=False,
    ),
    task(
        "For every region in [north, south] call {api}/regions/{region} at most 2 at a time "
        "and then sum the amount",
        "http python",
        "loop",
        expect=lambda r: r["total_amount"] == 150.0,
        simple=False,
    ),
    task(
        "Hit {api}/a, {api}/b and {api}/health concurrently with retries on transient "
        "errors, then merge the answers",
        "http noop",
        "fan_out retry",
        expect=lambda r: set(r) == {"fetch_a", "fetch_b", "fetch_health"},
        simple=False,
    ),
    task(
        "Load orders.csv into the orders table with duckdb, then run `SELECT region, "
        "sum(amount) AS total FROM orders GROUP BY region` in duckdb, and if there are more "
        "than 10 rows ask an analyst to review",
        "duckdb approval",
        "branch",
        simple=False,
    ),
    task(
        "Run the playbook etl/extract, then run the playbook etl/transform, and finally ask "
        "the data owner to sign off",
        "playbook approval",
        "branch",
        simple=False,
    ),
    task(
        "Fetch {api}/items. Compute the average price. When it exceeds 100, post it to "
        "{api}/hooks/expensive; otherwise post it to {api}/hooks/cheap",
        "http python",
        "branch",
        expect=lambda r: r["json"]["received"] is True,
        simple=False,
    ),
    task(
        "Query the events table in postgres using credential events. If the number of rows "
        "is at least 1000, run the playbook ops/archive_events",
        "postgres playbook",
        "branch",
        simple=False,
    ),
    task(
        "Download {api}/orders and if it fails notify {api}/hooks/alert",
        "http",
        "branch",
        expect=lambda r: r["status_code"] == 200,
        simple=False,
    ),
    task(
        "For each id in [1, 2, 3] fetch {api}/orders/{id} with retries, then count them and "
        "post the result to {api}/hooks/count",
        "http python",
        "loop retry",
        expect=lambda r: r["json"]["received"] is True,
        simple=False,
    ),
    task(
        "Fetch {api}/items, keep only items with price below 7, sort them by price, and "
        "post them to {api}/hooks/cheap",
        "http python",
        expect=lambda r: r["json"]["received"] is True,
        simple=False,
    ),
    task(
        "Extract the users from {api}/users, deduplicate by email, then insert them into "
        "the crm.users table using credential crm and ask an operator to confirm the load",
        "http python postgres approval",
        "branch",
        simple=False,
    ),
    task(
        "Check {api}/health and {api}/a in parallel, then run the playbook ops/report",
        "http noop playbook",
        "fan_out",
        simple=False,
    ),
    task(
        "Every night at 2am query the payments table in postgres using credential pay, "
        "compute the total amount, and if the total amount is below 10 alert "
        "{api}/hooks/low",
        "postgres python http",
        "branch",
        simple=False,
    ),
    task(
        "For each city in [Paris, Oslo] download {api}/weather/{city} in parallel with at "
        "most 2 at a time, then find the maximum temp",
        "http python",
        "loop",
        expect=lambda r: r["max_temp"] == 25.0,
        simple=False,
    ),
    task(
        "Run `./export.sh` in the shell, then upload the result to {api}/hooks/upload with "
        "retries up to 4 times",
        "shell http",
        "retry",
        simple=False,
    ),
    task(
        "Get {api}/orders, group them by region, and unless the count is below 3 send the "
        "summary to {api}/hooks/summary",
        "http python",
        "branch",
        expect=lambda r: r["json"]["received"] is True,
        simple=False,
    ),
]

TASKS: list[Task] = [*SIMPLE, *HARD]
