"""MCP server benchmark: start-up of `noetl-agent mcp` and the latency of read tools.

``python -m evals.bench.mcp`` (also run by ``make bench``) measures, on this machine,
over stdio as an assistant would use it, with a minimal JSON-RPC client (one line per
message; no SDK on the client side, so its own import time is not counted):

* **Start-up**: from spawning `noetl-agent mcp` on a fresh ``NOETL_HOME`` to the answer
  of ``tools/list`` (after ``initialize``); median of ``--runs`` fresh processes after one
  untimed start, with the process's own CPU time at that moment (``/proc``: what other
  processes on a shared machine do not inflate). The processes run as an installed
  package does, with bytecode caches (``PYTHONDONTWRITEBYTECODE`` is dropped from their
  environment, so the untimed start writes any that are missing). For scale, the import
  of the MCP SDK alone (``import mcp.server.mcpserver`` in a fresh interpreter) is timed
  the same way.
* **Read latency**: in one session, after registering and running a playbook through
  the tools, ``--calls`` sequential calls each of ``get_execution`` and
  ``list_playbooks``: p50 and p95 of the round trip.

Goals: start-up under 2 s; p50 under 10 ms per read call. The "MCP server" section of
``evals/RESULTS.md`` (between ``<!-- mcp:start -->`` and ``<!-- mcp:end -->``) is
replaced; the rest of the file is kept. A missed goal is reported as FAIL, not as an
error; the exit status is 1 only when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from evals.bench.engine import machine
from evals.results import RESULTS, write_section

MARK_START = "<!-- mcp:start -->"
MARK_END = "<!-- mcp:end -->"
GOAL_STARTUP_S = 2.0
GOAL_P50_MS = 10.0
NOETL_AGENT = Path(sys.executable).parent / "noetl-agent"
PROTOCOL = "2025-11-25"
PLAYBOOK = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: bench_hello, path: bench/mcp_hello, description: Greet someone}
workload: {name: world}
workflow:
  - step: start
    tool: {kind: python, code: "def main(name):\\n    return {'greeting': 'hello ' + name}",
           input: {name: "{{ name }}"}}
    next: {arcs: [{step: done}]}
  - step: done
    tool: {kind: noop}
"""


class Session:
    """A minimal MCP client over a child's stdin and stdout (one JSON message a line)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.stdin: IO[bytes] = process.stdin
        self.stdout: IO[bytes] = process.stdout
        self.next_id = 0

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message = {"jsonrpc": "2.0", "method": method, "params": params or {}}
        self.stdin.write(json.dumps(message).encode() + b"\n")
        self.stdin.flush()

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request and return its result (raise on an error or a closed pipe)."""
        self.next_id += 1
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}}
        self.stdin.write(json.dumps(message).encode() + b"\n")
        self.stdin.flush()
        while True:
            line = self.stdout.readline()
            if not line:
                raise RuntimeError(f"noetl-agent mcp closed its output during {method}")
            answer = json.loads(line)
            if answer.get("id") != self.next_id:
                continue  # a notification
            if "error" in answer:
                raise RuntimeError(f"{method} failed: {answer['error']}")
            result: dict[str, Any] = answer["result"]
            return result

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = self.request("tools/call", {"name": tool, "arguments": arguments})
        if result.get("isError"):
            raise RuntimeError(f"{tool} failed: {result['content']}")
        structured: dict[str, Any] = result["structuredContent"]
        return structured

    def initialize(self) -> None:
        self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "1"},
            },
        )
        self.notify("notifications/initialized")


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    """User plus system CPU time of the children waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _environment(**extra: str) -> dict[str, str]:
    """The children's environment: as an installed package runs, with bytecode caches
    (``PYTHONDONTWRITEBYTECODE`` would make every start compile every module again)."""
    env = dict(os.environ, **extra)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _spawn(home: Path) -> subprocess.Popen[bytes]:
    env = _environment(NOETL_HOME=str(home))
    return subprocess.Popen(
        [str(NOETL_AGENT), "mcp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )


def _close(process: subprocess.Popen[bytes]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Report:
    startup_s: list[float] = field(default_factory=list)
    startup_cpu_s: list[float] = field(default_factory=list)
    sdk_import_s: list[float] = field(default_factory=list)
    sdk_import_cpu_s: list[float] = field(default_factory=list)
    tools: int = 0
    latency_ms: dict[str, list[float]] = field(default_factory=dict)


def _start(home: Path) -> tuple[float, float, int]:
    """Wall and CPU seconds from spawn to ``tools/list`` answered, and the tool count."""
    started = time.perf_counter()
    process = _spawn(home)
    try:
        session = Session(process)
        session.initialize()
        listed = session.request("tools/list")
        return time.perf_counter() - started, _cpu_seconds(process.pid), len(listed["tools"])
    finally:
        _close(process)


def measure_startup(report: Report, runs: int, folder: Path) -> None:
    """Spawn → ``tools/list`` answered, on a fresh home each run, after one untimed
    start (which writes the bytecode caches where they are missing)."""
    _start(folder / "warm-up")
    subprocess.run(
        [sys.executable, "-c", "import mcp.server.mcpserver"], check=True, env=_environment()
    )
    for run in range(runs):
        wall, cpu, report.tools = _start(folder / f"start-{run}")
        report.startup_s.append(wall)
        report.startup_cpu_s.append(cpu)
        before = _children_cpu()
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import mcp.server.mcpserver"], check=True, env=_environment()
        )
        report.sdk_import_s.append(time.perf_counter() - started)
        report.sdk_import_cpu_s.append(_children_cpu() - before)


def measure_reads(report: Report, calls: int, folder: Path) -> None:
    """Round trips of the read tools in one session, after one real execution."""
    process = _spawn(folder / "reads")
    try:
        session = Session(process)
        session.initialize()
        session.call("register_playbook", {"yaml": PLAYBOOK})
        run = session.call("execute_playbook", {"path": "bench/mcp_hello"})
        if run["status"] != "completed":
            raise RuntimeError(f"the benchmark playbook did not complete: {run}")
        reads = {
            "get_execution": {"execution_id": run["execution_id"]},
            "list_playbooks": {},
        }
        for tool, arguments in reads.items():
            session.call(tool, arguments)  # warm
            times = []
            for _ in range(calls):
                started = time.perf_counter()
                session.call(tool, arguments)
                times.append((time.perf_counter() - started) * 1000)
            report.latency_ms[tool] = times
    finally:
        _close(process)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def render(report: Report, runs: int, calls: int) -> str:
    """The Markdown section of the results file."""
    meta = machine()
    startup = statistics.median(report.startup_s)
    cpu = statistics.median(report.startup_cpu_s)
    sdk = statistics.median(report.sdk_import_s)
    sdk_cpu = statistics.median(report.sdk_import_cpu_s)
    verdict = "PASS" if startup < GOAL_STARTUP_S else "FAIL"
    out = [
        MARK_START,
        "## MCP server (stdio)",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {meta['nproc']} cores "
        f"({meta['cpu']}), Python {meta['python']}; `python -m evals.bench.mcp` "
        f"(--runs {runs}, --calls {calls}); load average {os.getloadavg()[0]:.1f}. Minimal "
        "JSON-RPC client over stdio; bytecode caches in place.",
        "",
        "| measure | median | goal | verdict |",
        "|---|---|---|---|",
        f"| start-up: spawn to `tools/list` answered ({report.tools} tools) | "
        f"{startup:.2f} s (CPU {cpu:.2f} s) | < {GOAL_STARTUP_S:g} s | {verdict} |",
        f"| for scale: `import mcp.server.mcpserver` alone | {sdk:.2f} s (CPU {sdk_cpu:.2f} s) "
        "| | |",
    ]
    for tool, times in report.latency_ms.items():
        p50, p95 = _quantile(times, 0.5), _quantile(times, 0.95)
        verdict = "PASS" if p50 < GOAL_P50_MS else "FAIL"
        out.append(
            f"| `{tool}` round trip, p50 (p95) | {p50:.2f} ms ({p95:.2f} ms) | "
            f"< {GOAL_P50_MS:g} ms p50 | {verdict} |"
        )
    out += [
        "",
        "Start-up opens the SQLite file and builds the server; the embedding model, the "
        "analytics store and any LLM load on first use. Most of it is importing the MCP "
        "SDK (second row). Wall times on a shared machine grow with its load; the CPU time "
        "is the process's own.",
        MARK_END,
    ]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.bench.mcp", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes to start")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per read tool")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown results file")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.calls < 1:
        parser.error("--runs and --calls must be at least 1")
    report = Report()
    try:
        with tempfile.TemporaryDirectory(prefix="noetl-bench-mcp-") as folder:
            measure_startup(report, args.runs, Path(folder))
            measure_reads(report, args.calls, Path(folder))
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"the MCP benchmark could not run: {exc}", file=sys.stderr)
        return 1
    section = render(report, args.runs, args.calls)
    write_section(args.results, section, MARK_START, MARK_END)
    print(section)
    print(f"results written to {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
