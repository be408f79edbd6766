"""Playbooks that fail in distinct ways, and some that succeed, for the learning tests."""

from __future__ import annotations


def failing(path: str, message: str, *, error: str = "RuntimeError", desc: str = "") -> str:
    """A playbook whose ``work`` step raises ``error(message)``."""
    return f"""\
apiVersion: noetl.io/v2
kind: Playbook
metadata:
  name: {path.rsplit("/", 1)[-1]}
  path: {path}
  description: "{desc or "a step that fails"}"
workflow:
  - step: start
    tool: {{kind: noop}}
    next: {{arcs: [{{step: work}}]}}
  - step: work
    tool:
      kind: python
      code: |
        def main():
            raise {error}({message!r})
"""


DB_DOWN = failing(
    "etl/load_orders",
    "could not connect to server: Connection refused. Is the database server running "
    "on host 10.0.0.5 and accepting TCP/IP connections on port 5432?",
    error="ConnectionRefusedError",
    desc="Load yesterday's orders into the warehouse",
)
DB_DOWN_ELSEWHERE = failing(
    "etl/sync_customers",
    "connection to database server at db.internal:5432 refused; the server is not running",
    error="ConnectionRefusedError",
    desc="Copy the customer table to the reporting replica",
)
MISSING_KEY = failing(
    "api/enrich_users",
    "'customer_id'",
    error="KeyError",
    desc="Enrich user records with CRM attributes",
)
AUTH = failing(
    "api/fetch_invoices",
    "HTTP 401 Unauthorized: the API token was rejected by the billing service",
    error="PermissionError",
    desc="Fetch invoices from the billing API",
)
NO_FILE = failing(
    "files/import_sales",
    "[Errno 2] No such file or directory: '/data/incoming/sales_2026-11-30.csv'",
    error="FileNotFoundError",
    desc="Import the daily sales CSV export",
)
DIVIDE = failing(
    "reports/margins",
    "division by zero",
    error="ZeroDivisionError",
    desc="Compute product margins per region",
)

SALES_REPORT = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata:
  name: weekly_sales
  path: reports/weekly_sales
  description: Summarise the week's sales by region and email the report to managers
workflow:
  - step: start
    desc: total sales per region
    tool:
      kind: python
      code: |
        def main():
            return {"north": 10, "south": 7}
    next: {arcs: [{step: email}]}
  - step: email
    desc: send the summary by email
    tool: {kind: noop}
"""

THUMBNAILS = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata:
  name: thumbnails
  path: media/thumbnails
  description: Resize uploaded product photos into thumbnails
workflow:
  - step: start
    tool: {kind: noop}
"""

RETRIED = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata:
  name: flaky
  path: etl/flaky_extract
workload:
  counter: ""
workflow:
  - step: extract
    tool:
      kind: python
      code: |
        from pathlib import Path

        def main(counter):
            path = Path(counter)
            attempt = int(path.read_text()) + 1 if path.exists() else 1
            path.write_text(str(attempt))
            if attempt < 2:
                raise TimeoutError("read timed out after 30 seconds talking to the source API")
            return {"attempt": attempt}
      input:
        counter: "{{ counter }}"
      spec:
        policy:
          rules:
            - when: "{{ output.status == 'error' }}"
              then: {do: retry, attempts: 3, delay: 0.01}
"""

SLEEPER = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata:
  name: sleeper
  path: ops/sleeper
workload:
  seconds: 0
workflow:
  - step: start
    tool:
      kind: python
      code: |
        import time

        def main(seconds):
            time.sleep(seconds)
            return seconds
      input:
        seconds: "{{ seconds }}"
"""
