"""The labelled corpus: families of failures that have the same cause, worded differently.

Each family is one cause; each of its variants is a separate playbook, with its own path,
step name and description, whose step really fails that way through a different tool or
library, so the same cause reaches the log in different words:

- HTTP 503 and 429 and rejected credentials: the ``http`` tool, urllib, httpx and
  requests calling a local test server (:data:`ROUTES`, served by :func:`answer`), and a
  PostgreSQL role that does not exist;
- timeouts: a slow route of that server, a PostgreSQL statement timeout, a step timeout;
- connection refused: a closed port, through the ``http`` and ``postgres`` tools and
  Python sockets;
- KeyError, ZeroDivisionError and validation errors: Python, PostgreSQL, pydantic,
  jsonschema and the test server's 422;
- SQL syntax errors and missing tables: PostgreSQL, DuckDB and SQLite.

A variant's tool is YAML in which ``$SERVER`` stands for the test server's base URL;
``postgres`` steps use the credentials of :func:`credentials` (``NOETL_EVAL_PG_DSN``,
default the local server). Queries are how a person would describe each cause; the
runner checks that each failure's code and message match its family's ``expect``.
:mod:`evals.retrieval.raised` holds a second corpus, of causes raised as other ecosystems
word them.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PG_DSN = os.environ.get("NOETL_EVAL_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
SERVER = "$SERVER"
CLOSED = "http://127.0.0.1:1"  # nothing listens on port 1
SLOW_SECONDS = 2.0  # how long the server's slow routes take to answer


@dataclass(frozen=True, slots=True)
class Variant:
    path: str
    step: str
    description: str
    tool: str  # the YAML mapping of the step's tool; $SERVER is the test server's URL


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    variants: list[Variant]
    queries: list[str] = field(default_factory=list)
    expect: str | None = None  # a pattern each failure's "code message" must match


def python(body: str) -> str:
    """A python tool whose ``main()`` runs ``body`` (indented by four spaces)."""
    return "kind: python\ncode: |\n  def main():\n" + textwrap.indent(body, "  ")


def _py(code: str) -> str:
    return python(textwrap.indent(textwrap.dedent(code).strip("\n"), "    "))


def _http(url: str, method: str = "GET", **fields: Any) -> str:
    lines = ["kind: http", f"method: {method}", f"url: {url}"]
    lines += [f"{key}: {value}" for key, value in fields.items()]
    return "\n".join(lines)


def _sql(kind: str, statement: str, auth: str | None = None, verb: str = "query") -> str:
    lines = [f"kind: {kind}"] + ([f"auth: {auth}"] if auth else [])
    return "\n".join([*lines, f"{verb}: {json.dumps(statement)}"])


# The test server's routes: path → (status, body, seconds before answering).
ROUTES: dict[str, tuple[int, Any, float]] = {
    "/v1/inventory": (503, {"error": "upstream overloaded, try again later"}, 0.0),
    "/v2/catalog": (503, "Service Unavailable", 0.0),
    "/v1/prices": (503, {"message": "the pricing service is down for maintenance"}, 0.0),
    "/v3/stock/sync": (503, {"status": "unavailable", "reason": "no healthy backend"}, 0.0),
    "/v1/geocode": (429, {"error": "rate limit exceeded", "retry_after": 30}, 0.0),
    "/v2/translate": (429, "Too Many Requests", 0.0),
    "/v1/emails/send": (429, {"detail": "quota of 100 requests per minute used up"}, 0.0),
    "/v1/clicks": (429, {"message": "slow down: request rate above the plan's limit"}, 0.0),
    "/v1/forecast": (200, {"forecast": "sunny"}, SLOW_SECONDS),
    "/v2/scores": (200, {"scores": []}, SLOW_SECONDS),
    "/v1/billing/invoices": (401, {"error": "invalid API key"}, 0.0),
    "/v2/tickets": (403, {"message": "the access token has expired"}, 0.0),
    "/v1/leads/export": (401, "Unauthorized", 0.0),
    "/v1/customers": (
        422,
        {"detail": [{"loc": ["body", "email"], "msg": "value is not a valid email address"}]},
        0.0,
    ),
}


def answer(method: str, path: str, pool: str | None) -> tuple[int, dict[str, str], Any, float]:
    """The test server's answer to a request (``serve_json``'s answer function)."""
    status, body, delay = ROUTES.get(path.partition("?")[0], (404, {"error": "no such route"}, 0))
    headers = {"Retry-After": "30"} if status == 429 else {}
    return status, headers, body, delay


def credentials() -> dict[str, Mapping[str, Any]]:
    """The keychain of the ``postgres`` steps: the database, a role that does not exist
    on it, and a port nothing listens on."""
    return {
        "warehouse": {"kind": "postgres", "data": {"dsn": PG_DSN}},
        "reporting": {"kind": "postgres", "data": {"dsn": _with_user(PG_DSN, "reporting_ro")}},
        "replica": {
            "kind": "postgres",
            "data": {"host": "127.0.0.1", "port": 1, "user": "postgres", "database": "ledger"},
        },
    }


def _with_user(dsn: str, user: str) -> str:
    scheme, _, rest = dsn.partition("://")
    _, at, location = rest.rpartition("@")
    return f"{scheme}://{user}@{location if at else rest}"


FAMILIES = [
    Family(
        "service_unavailable",
        [
            Variant(
                "inventory/refresh_stock",
                "fetch_stock",
                "Refresh the stock levels from the inventory service",
                _http(f"{SERVER}/v1/inventory"),
            ),
            Variant(
                "catalog/mirror",
                "download",
                "Mirror the product catalog",
                _py(f"""
                    import urllib.request
                    urllib.request.urlopen("{SERVER}/v2/catalog", timeout=10)
                """),
            ),
            Variant(
                "pricing/daily_prices",
                "get_prices",
                "Pull today's prices",
                _py(f"""
                    import httpx
                    httpx.get("{SERVER}/v1/prices", timeout=10).raise_for_status()
                """),
            ),
            Variant(
                "inventory/push_reservations",
                "sync",
                "Send the warehouse reservations to the stock service",
                _py(f"""
                    import requests
                    requests.post("{SERVER}/v3/stock/sync", json={{"n": 1}}, timeout=10
                                  ).raise_for_status()
                """),
            ),
        ],
        [
            "the service is unavailable",
            "the upstream server is down or overloaded",
            "server error from the API, try again later",
        ],
        expect=r"\b503\b",
    ),
    Family(
        "rate_limited",
        [
            Variant(
                "geo/geocode_addresses",
                "geocode",
                "Geocode new customer addresses",
                _http(f"{SERVER}/v1/geocode"),
            ),
            Variant(
                "catalog/translate",
                "translate",
                "Translate product descriptions",
                _py(f"""
                    import urllib.request
                    urllib.request.urlopen("{SERVER}/v2/translate", timeout=10)
                """),
            ),
            Variant(
                "marketing/send_campaign",
                "send",
                "Send the campaign emails",
                _py(f"""
                    import httpx
                    httpx.post("{SERVER}/v1/emails/send", json={{"to": "all"}},
                               timeout=10).raise_for_status()
                """),
            ),
            Variant(
                "web/forward_clicks",
                "push",
                "Forward click events to the analytics API",
                _py(f"""
                    import requests
                    requests.post("{SERVER}/v1/clicks", json=[], timeout=10).raise_for_status()
                """),
            ),
        ],
        ["too many requests to the API", "hit the API quota", "we are being throttled"],
        expect=r"\b429\b",
    ),
    Family(
        "timed_out",
        [
            Variant(
                "weather/forecast",
                "download",
                "Download the weather forecast",
                _http(f"{SERVER}/v1/forecast", timeout=0.3),
            ),
            Variant(
                "ml/score_batch",
                "predict",
                "Score the batch with the model service",
                _py(f"""
                    import urllib.request
                    urllib.request.urlopen("{SERVER}/v2/scores", timeout=0.3)
                """),
            ),
            Variant(
                "reports/yearly_aggregate",
                "aggregate",
                "Run the yearly aggregate query",
                _sql(
                    "postgres",
                    "SET statement_timeout = '200ms'; SELECT pg_sleep(3)",
                    "warehouse",
                    "command",
                ),
            ),
            Variant(
                "reports/nightly_cube",
                "build_cube",
                "Build the nightly sales cube",
                _py("""
                    import time
                    time.sleep(10)
                """)
                + "\ntimeout: 0.5",
            ),
        ],
        [
            "the call took too long and timed out",
            "request exceeded its time limit",
            "the job ran out of time",
        ],
        expect=r"timed out|timeout",
    ),
    Family(
        "connection_refused",
        [
            Variant(
                "ops/health_check",
                "ping",
                "Check that the order service is up",
                _http(f"{CLOSED}/health"),
            ),
            Variant(
                "etl/load_orders",
                "load",
                "Load yesterday's orders into the warehouse",
                _py("""
                    import socket
                    socket.create_connection(("127.0.0.1", 1), timeout=5)
                """),
            ),
            Variant(
                "finance/ledger_export",
                "extract",
                "Export the general ledger for the month",
                _sql("postgres", "SELECT * FROM ledger", "replica"),
            ),
            Variant(
                "crm/sync_contacts",
                "upload",
                "Upload changed contacts to the CRM",
                _py(f"""
                    import requests
                    requests.get("{CLOSED}/contacts", timeout=5)
                """),
            ),
        ],
        [
            "cannot connect to the server",
            "the connection was refused",
            "nothing is listening on that port",
        ],
        expect=r"refused|connect call failed|connection attempts failed",
    ),
    Family(
        "missing_key",
        [
            Variant(
                "crm/enrich_users",
                "enrich",
                "Enrich user records with CRM attributes",
                _py("""
                    record = {"id": 1, "name": "Ann"}
                    return record["customer_id"]
                """),
            ),
            Variant(
                "ops/nightly_rotation",
                "read_config",
                "Rotate the warehouse access keys",
                _py("""
                    import os
                    return os.environ["ROTATION_SCHEDULE"]
                """),
            ),
            Variant(
                "marketing/render_mail",
                "render",
                "Render the welcome mail for new sign-ups",
                _py("""
                    values = {"first_name": "Ann"}
                    return "Dear {title} {last_name}".format(**values)
                """),
            ),
            Variant(
                "shop/order_totals",
                "total",
                "Total the items of each web order",
                _py("""
                    order = {"items": [{"sku": "A1", "qty": 2}]}
                    return sum(item["qty"] * item["price"] for item in order["items"])
                """),
            ),
        ],
        [
            "a key is missing from the dictionary",
            "KeyError on a field that is not there",
            "the record does not have the expected field",
        ],
        expect=r"\bKeyError\b",
    ),
    Family(
        "division_by_zero",
        [
            Variant(
                "reports/margins",
                "compute",
                "Compute product margins per region",
                _py("""
                    revenue, units = 120.0, 0
                    return revenue / units
                """),
            ),
            Variant(
                "reports/shift_slots",
                "slot",
                "Assign orders to delivery slots",
                _py("""
                    orders, slots = 17, 0
                    return orders % slots
                """),
            ),
            Variant(
                "finance/unit_cost",
                "unit_cost",
                "Compute the unit cost of each purchase",
                _py("""
                    from decimal import Decimal
                    return str(Decimal("12.50") / Decimal(0))
                """),
            ),
            Variant(
                "reports/conversion_rate",
                "rate",
                "Compute the conversion rate per campaign",
                _sql("postgres", "SELECT 42 / count(*) FROM pg_class WHERE false", "warehouse"),
            ),
        ],
        [
            "divided by zero",
            "zero denominator in a calculation",
            "the ratio has nothing to divide by",
        ],
        expect=r"by zero|DivisionByZero",
    ),
    Family(
        "sql_syntax",
        [
            Variant(
                "etl/daily_counts",
                "count",
                "Count yesterday's orders per shop",
                _sql("postgres", "SELEC count(*) FROM pg_class", "warehouse"),
            ),
            Variant(
                "lake/compact",
                "summarise",
                "Summarise the click files in the lake",
                _sql("duckdb", "SELECT id, FROM WHERE id > 3"),
            ),
            Variant(
                "mobile/local_cache",
                "query_cache",
                "Read the app's offline cache",
                _py("""
                    import sqlite3
                    connection = sqlite3.connect(":memory:")
                    connection.execute("SELECT name FORM sqlite_master")
                """),
            ),
            Variant(
                "reports/top_products",
                "rank",
                "Rank the best selling products",
                _sql("postgres", "SELECT relname FROM pg_class WHERE (relpages > 1", "warehouse"),
            ),
        ],
        [
            "the SQL query has a syntax error",
            "malformed SQL statement",
            "typo in the query text",
        ],
        expect=r"syntax error",
    ),
    Family(
        "missing_table",
        [
            Variant(
                "etl/archive_orders",
                "archive",
                "Archive last year's orders",
                _sql("postgres", "SELECT * FROM orders_archive_2025", "warehouse"),
            ),
            Variant(
                "lake/customer_report",
                "report",
                "Report customers per country from the lake",
                _sql("duckdb", "SELECT country, count(*) FROM customers_v2 GROUP BY country"),
            ),
            Variant(
                "mobile/sync_invoices",
                "read_invoices",
                "Read unsent invoices from the device database",
                _py("""
                    import sqlite3
                    connection = sqlite3.connect(":memory:")
                    connection.execute("SELECT * FROM invoices WHERE sent = 0")
                """),
            ),
            Variant(
                "ops/audit_cleanup",
                "truncate",
                "Empty the audit log after export",
                _sql("postgres", "TRUNCATE audit_log_staging", "warehouse", "command"),
            ),
        ],
        [
            "the table does not exist",
            "query on a missing table",
            "the relation was not found in the database",
        ],
        expect=r"does not exist|no such table",
    ),
    Family(
        "bad_credentials",
        [
            Variant(
                "billing/fetch_invoices",
                "fetch",
                "Fetch invoices from the billing API",
                _http(f"{SERVER}/v1/billing/invoices"),
            ),
            Variant(
                "support/sync_tickets",
                "pull",
                "Pull support tickets from the helpdesk",
                _py(f"""
                    import urllib.request
                    request = urllib.request.Request(
                        "{SERVER}/v2/tickets", headers={{"Authorization": "Bearer expired"}}
                    )
                    urllib.request.urlopen(request, timeout=10)
                """),
            ),
            Variant(
                "reports/refresh_dashboard",
                "refresh",
                "Refresh the sales dashboard",
                _sql("postgres", "SELECT 1", "reporting"),
            ),
            Variant(
                "crm/export_leads",
                "export",
                "Export new leads from the CRM",
                _py(f"""
                    import requests
                    requests.get("{SERVER}/v1/leads/export", auth=("crm", "wrong"),
                                 timeout=10).raise_for_status()
                """),
            ),
        ],
        [
            "login failed: wrong credentials",
            "expired or invalid token",
            "we are not authorised to use the API",
        ],
        expect=r"\b40[13]\b|\b28000\b|\b28P01\b",
    ),
    Family(
        "validation_failed",
        [
            Variant(
                "shop/check_orders",
                "accept",
                "Check incoming webhook orders",
                _py("""
                    import pydantic
                    class Order(pydantic.BaseModel):
                        id: int
                        quantity: int
                    Order.model_validate({"id": 7, "quantity": "three"})
                """),
            ),
            Variant(
                "crm/import_contacts",
                "read_rows",
                "Import contacts from the partner file",
                _py("""
                    import jsonschema
                    schema = {"type": "object", "required": ["email", "name"]}
                    jsonschema.validate({"name": "Ann"}, schema)
                """),
            ),
            Variant(
                "crm/create_customers",
                "create",
                "Create the new customers in the shop",
                _http(f"{SERVER}/v1/customers", "POST", json='{"email": "ann-at-example"}'),
            ),
            Variant(
                "hr/onboard",
                "parse_form",
                "Onboard new employees from the sign-up form",
                _py("""
                    import pydantic
                    class Employee(pydantic.BaseModel):
                        start: pydantic.PastDate
                        email: str = pydantic.Field(pattern=r"^[^@]+@[^@]+$")
                    Employee.model_validate({"start": "2099-01-01", "email": "bob"})
                """),
            ),
        ],
        [
            "the input failed validation",
            "the payload does not match the schema",
            "invalid field value rejected by the validator",
        ],
        expect=r"validation|\b422\b|required property",
    ),
]


def playbook(variant: Variant, server: str = "http://127.0.0.1:9") -> str:
    """The YAML of a variant's playbook: a start step, then the step that fails;
    ``server`` is the test server's base URL."""
    tool = textwrap.indent(variant.tool.replace(SERVER, server), "      ")
    return f"""\
apiVersion: noetl.io/v2
kind: Playbook
metadata:
  name: {variant.path.rsplit("/", 1)[-1]}
  path: {variant.path}
  description: "{variant.description}"
workflow:
  - step: start
    tool: {{kind: noop}}
    next: {{arcs: [{{step: {variant.step}}}]}}
  - step: {variant.step}
    tool:
{tool}
"""
