"""MCP eval: the README's "Use it from an assistant" walk-through, replayed as a scripted
assistant session over stdio, checking every step's structured output.

    .venv/bin/python -m evals.mcp.run [--runs N] [--results FILE] [--no-write]

On a fresh ``NOETL_HOME`` (a temporary folder), with a local "orders service" that
answers 503 to every other request (a transient failure, in this process's thread), the
session launches `noetl-agent mcp` through the SDK's stdio client and does what an
assistant would:

1. ``generate_playbook`` from "Fetch the orders from http://127.0.0.1:PORT/orders.json":
   a valid draft whose dry run passed, not gated (no code runs);
2. ``validate_playbook`` on the draft's YAML; 3. ``register_playbook``;
4. ``execute_playbook`` ``N`` times: every other run fails with HTTP 503;
5. ``get_execution`` of a failure: the failed step and its error;
6. ``find_similar_failures``: the earlier failures of the same step;
7. ``explain_failure``: a root cause, with the similar failures as evidence;
8. ``suggest_policies``: a retry proposal for the fetch step;
9. ``request_review``: the review-queue link; nothing is decided.

Each step is reported PASS or FAIL with what was checked; the Markdown section goes into
``evals/RESULTS.md`` between ``<!-- mcp-eval:start -->`` and ``<!-- mcp-eval:end -->``.
The exit status is 1 when a step fails or the session cannot run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters

from evals.results import RESULTS, write_section

MARK_START = "<!-- mcp-eval:start -->"
MARK_END = "<!-- mcp-eval:end -->"
NOETL_AGENT = Path(sys.executable).parent / "noetl-agent"
PATH = "demo/orders"


class _FlakyOrders(BaseHTTPRequestHandler):
    """Odd requests get 503, even ones the orders."""

    calls = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            type(self).calls += 1
            odd = type(self).calls % 2 == 1
        if odd:
            self._send(503, b'{"error": "orders service overloaded, try again"}')
        else:
            self._send(200, json.dumps({"orders": [{"id": 1, "amount": 120}]}).encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@contextmanager
def flaky_orders() -> Iterator[str]:
    """The orders service's URL while it serves in a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyOrders)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/orders.json"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Step:
    name: str
    tool: str
    checks: list[tuple[str, bool]] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(ok for _, ok in self.checks)


@dataclass
class Session:
    client: Client
    steps: list[Step] = field(default_factory=list)

    async def step(
        self,
        name: str,
        tool: str,
        arguments: dict[str, Any],
        checks: Callable[[dict[str, Any]], list[tuple[str, bool]]],
    ) -> dict[str, Any]:
        """Call ``tool`` and record ``checks`` of its structured output."""
        record = Step(name, tool)
        self.steps.append(record)
        started = time.perf_counter()
        result = await self.client.call_tool(tool, arguments)
        record.seconds = time.perf_counter() - started
        if result.is_error or result.structured_content is None:
            record.error = " ".join(getattr(block, "text", "") for block in result.content)
            return {}
        output = result.structured_content
        try:
            record.checks = checks(output)
        except (KeyError, IndexError, TypeError) as exc:
            record.error = f"the output lacks what was checked: {exc!r}"
        return output


async def walk_through(client: Client, url: str, runs: int) -> list[Step]:
    """The README session (see the module docstring)."""
    s = Session(client)
    draft = await s.step(
        "generate",
        "generate_playbook",
        {"description": f"Fetch the orders from {url}", "path": PATH},
        lambda d: [
            ("valid draft", d["valid"] is True),
            ("dry run passed", d["dry_run"]["passed"] is True),
            ("the URL is in the YAML", url in d["yaml"]),
            ("not gated (runs no code)", d["gate"]["gated"] is False),
        ],
    )
    yaml = draft.get("yaml", "")
    await s.step(
        "validate",
        "validate_playbook",
        {"yaml": yaml},
        lambda v: [("valid", v["valid"] is True), ("its path", v["path"] == PATH)],
    )
    await s.step(
        "register",
        "register_playbook",
        {"yaml": yaml},
        lambda r: [("version 1", r["version"] == 1), ("uri", r["uri"] == f"playbook://{PATH}@1")],
    )
    outcomes = []
    for _ in range(runs):
        result = await client.call_tool("execute_playbook", {"path": PATH})
        outcomes.append(result.structured_content or {})
    failed = [o for o in outcomes if o.get("status") == "failed"]
    run_step = Step("run", "execute_playbook")
    run_step.checks = [
        ("every run finished", all(o.get("finished") for o in outcomes)),
        ("every other run failed", len(failed) == runs // 2),
        (
            "the rest completed",
            sum(o.get("status") == "completed" for o in outcomes) == runs - len(failed),
        ),
    ]
    s.steps.append(run_step)
    last = failed[-1]["execution_id"] if failed else "none"
    failure = await s.step(
        "failure",
        "get_execution",
        {"execution_id": last},
        lambda e: [
            ("failed", e["status"] == "failed"),
            ("the fetch step failed", any(st["status"] != "success" for st in e["steps"])),
            ("HTTP 503 in the error", "503" in json.dumps(e["error"])),
        ],
    )
    await s.step(
        "similar failures",
        "find_similar_failures",
        {"execution_id": last, "k": 5},
        lambda f: [
            ("its own failure indexed", f["failure"]["execution_id"] == last),
            ("earlier failures found", len(f["similar"]) >= 3),
            ("all of the same playbook", all(h["playbook_path"] == PATH for h in f["similar"])),
        ],
    )
    await s.step(
        "explain",
        "explain_failure",
        {"execution_id": last},
        lambda x: [
            ("explained as a failure", x["failed"] is True),
            ("a root cause", x["root_cause"] is not None),
            ("similar failures as evidence", len(x["similar"]) >= 1),
            ("suggested fixes", len(x["suggested_fixes"]) >= 1),
        ],
    )
    failed_steps = [st["step"] for st in failure.get("steps", []) if st["status"] != "success"]
    failed_step = failed_steps[0] if failed_steps else "none"
    suggested = await s.step(
        "suggest policies",
        "suggest_policies",
        {"playbook": PATH},
        lambda r: [
            ("a retry proposal", any(p["kind"] == "retry" for p in r["proposed"])),
            (
                "for the failing step",
                all(
                    p["target"] == {"playbook": PATH, "version": 1, "step": failed_step}
                    for p in r["proposed"]
                ),
            ),
            ("pending", all(p["status"] == "pending" for p in r["proposed"])),
        ],
    )
    proposals = suggested.get("proposed") or [{"id": "none"}]
    await s.step(
        "request review",
        "request_review",
        {"proposal_id": proposals[0]["id"]},
        lambda r: [
            ("a review link", r["review_url"].endswith(f"/review/proposals/{proposals[0]['id']}")),
            ("still pending: nothing decided", r["status"] == "pending"),
        ],
    )
    return s.steps


def render(steps: list[Step], runs: int, seconds: float) -> str:
    passed = sum(step.passed for step in steps)
    out = [
        MARK_START,
        "## MCP walk-through (eval)",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC: `python -m evals.mcp.run "
        f"--runs {runs}`, one scripted assistant session over stdio against a local service "
        f"that fails every other request with 503 ({seconds:.1f} s in all). "
        f"**{passed}/{len(steps)} steps pass.**",
        "",
        "| step | tool | checks | verdict |",
        "|---|---|---|---|",
    ]
    for step in steps:
        checks = "; ".join(f"{name} {'✓' if ok else '✗'}" for name, ok in step.checks)
        verdict = "PASS" if step.passed else f"FAIL {step.error or ''}".strip()
        out.append(f"| {step.name} | `{step.tool}` | {checks} | {verdict} |")
    out.append(MARK_END)
    return "\n".join(out)


async def replay(runs: int) -> tuple[list[Step], float]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="noetl-eval-mcp-") as home, flaky_orders() as url:
        env = dict(os.environ, NOETL_HOME=home)
        env.pop("NOETL_INDEXER", None)  # the walk-through uses search: index as usual
        params = StdioServerParameters(command=str(NOETL_AGENT), args=["mcp"], env=env)
        async with Client(params, read_timeout_seconds=300) as client:
            steps = await walk_through(client, url, runs)
    return steps, time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.mcp.run", description=__doc__)
    parser.add_argument("--runs", type=int, default=20, help="executions of the playbook")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown results file")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error("--runs must be at least 2")
    try:
        steps, seconds = asyncio.run(replay(args.runs))
    except (OSError, RuntimeError) as exc:
        print(f"the MCP eval could not run: {exc}", file=sys.stderr)
        return 1
    section = render(steps, args.runs, seconds)
    print(section)
    if not args.no_write:
        write_section(args.results, section, MARK_START, MARK_END)
        print(f"results written to {args.results}")
    return 0 if all(step.passed for step in steps) else 1


if __name__ == "__main__":
    raise SystemExit(main())
