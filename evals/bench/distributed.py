"""Distributed benchmark: a real server and two real workers on PostgreSQL and NATS.

``python -m evals.bench.distributed`` (also run by ``make bench``) sets up, for this run
only, a fresh PostgreSQL database and a JetStream stream (both removed at the end), starts
``noetl-agent server --database --nats`` and two ``noetl-agent worker`` processes through
the CLI, as a user would, and measures:

* **Throughput**: a 5-step playbook of ``python`` steps that each return a small dict is
  registered and started ``--executions`` times through ``POST /api/execute``, all at
  once (a few requests in flight); the clock runs from the first request to the last
  ``playbook.processed`` in the event log. Steps per second = executions x 5 / that time.
* **Where a step's time goes**, from the event log timestamps of the timed executions:
  scheduling (``step.started`` -> ``tool.started``: the command is stored, announced on
  NATS, fetched, claimed over HTTP and started on a worker), the tool run (``tool.started``
  -> ``tool.processed``), and the hand-back (``tool.processed`` -> the next
  ``step.started``: the report reaches the server and the engine decides); for executions
  run one at a time, for ``--some-rounds`` rounds of ``--some-at-once`` executions together
  (fewer than the workers' slots, so no step waits for a worker), and for the throughput
  run (where steps wait for a free slot: that figure is the queue, see Little's law).
* **Event ingestion**: ``--ingest-events`` events shaped like a worker's reports of
  pipeline tools (``tool.started`` and a partial ``tool.processed`` with a typical
  payload) about commands the worker token has claimed are posted to
  ``POST /api/events/batch`` in batches of ``--ingest-batch`` (default: the most a
  worker puts in one report, ``engine.worker.remote.BATCH_SIZE``) by
  ``--ingest-clients`` concurrent clients, each one batch at a time like a worker's
  sender and kept for the whole run like a worker's HTTP client. Then the very rows the
  server stored are written again with one binary COPY (``asyncpg.copy_records_to_table``)
  into a table with the event table's columns and indexes, in the same database,
  ``COPY_REPEATS`` times (emptied before each; the round takes the median). ``--rounds``
  rounds alternate the two, so both see the same load; the ratio is the median of the
  per-round ratios. The CPU time of the server and of the PostgreSQL backends serving the
  benchmark's database is taken for each path. With ``--profile``, one more round, not
  counted, is recorded.

The "Distributed" section of ``evals/RESULTS.md`` (between ``<!-- distributed:start -->``
and ``<!-- distributed:end -->``) is replaced; the rest of the file is kept. The exit status
is 1 when an execution did not complete or a process failed, 0 otherwise (a missed goal
is reported as FAIL in the results, not as an error).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx

from engine.adapters.postgres.stores import EVENT_COPY_COLUMNS
from engine.core.commands import global_id
from engine.worker.remote import BATCH_SIZE
from evals.bench.engine import machine
from evals.results import RESULTS, write_section

MARK_START = "<!-- distributed:start -->"
MARK_END = "<!-- distributed:end -->"
NOETL_AGENT = Path(sys.executable).parent / "noetl-agent"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
NATS_URL = "nats://127.0.0.1:4222"
STEPS = 5
GOAL_STEPS_PER_S = 150.0
GOAL_SCHEDULING_P50_MS = 10.0
GOAL_INGEST_RATIO = 0.30
IDLE_POOL = "bench_idle"  # no worker serves it: the ingestion executions stay put

PLAYBOOK = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: bench_dist5, path: bench/dist5}
workflow:
""" + "".join(
    f"""  - step: {name}
    tool:
      kind: python
      code: |
        result = {{"i": {i}}}
"""
    + (f"    next: {{arcs: [{{step: s{i + 2}}}]}}\n" if i < STEPS - 1 else "")
    for i, name in enumerate(["start", *(f"s{n}" for n in range(2, STEPS + 1))])
)
IDLE_PLAYBOOK = f"""\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {{name: bench_idle, path: bench/idle}}
workflow:
  - step: start
    spec: {{runtime: {{pool: {IDLE_POOL}}}}}
    tool: {{kind: noop}}
"""


class BenchError(Exception):
    """The benchmark could not run (a service is down, a process failed to start)."""


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_database(dsn: str, name: str) -> str:
    """``dsn`` pointing at database ``name`` instead of its own."""
    base, _, query = dsn.partition("?")
    base = re.sub(r"/[^/]*$", f"/{name}", base) if base.count("/") > 2 else f"{base}/{name}"
    return f"{base}?{query}" if query else base


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def cpu_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def process_cpu(pids: Sequence[int]) -> float:
    """CPU seconds used so far by ``pids`` and their reaped and live children."""
    tick = os.sysconf("SC_CLK_TCK")
    seen: set[int] = set()
    total = 0.0
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            parts = stat.rsplit(")", 1)[1].split()
            total += sum(int(x) for x in parts[11:15]) / tick  # utime stime cutime cstime
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except (OSError, IndexError, ValueError):
            continue
        todo.extend(int(c) for c in children)
    return total


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# --------------------------------------------------------------------------- cluster


@dataclass
class Cluster:
    """A fresh database and stream, the server and the workers (see ``cluster``)."""

    dsn: str
    database: str
    stream: str
    url: str
    tokens: dict[str, str]
    logs: Path
    server: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in [self.server, *self.workers] if p is not None]

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def check_alive(self) -> None:
        for name, process in [("server", self.server), *(("worker", w) for w in self.workers)]:
            if process is not None and process.poll() is not None:
                raise BenchError(
                    f"the {name} exited with {process.returncode}; logs in {self.logs}"
                )


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(NOETL_AGENT), *args], env=env, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise BenchError(f"`noetl-agent {' '.join(args[:2])}` failed: {done.stderr[-800:]}")
    return done.stdout.strip().splitlines()[-1]


def _wait_for_text(path: Path, text: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{path.stem} exited during start-up:\n{path.read_text()[-2000:]}")
        if text in path.read_text():
            return
        time.sleep(0.05)
    raise BenchError(f"{path.stem} did not say {text!r} within {timeout} s; see {path}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.asynccontextmanager
async def cluster(
    admin_dsn: str, nats_url: str, workers: int, concurrency: int, logs: Path
) -> AsyncIterator[Cluster]:
    """Create the database and stream, start the server and ``workers`` workers; remove
    everything on the way out."""
    from engine.adapters.nats.bus import NatsCommandBus

    run_id = uuid.uuid4().hex[:10]
    database, stream = f"noetl_bench_{run_id}", f"NOETL_BENCH_{run_id}"
    try:
        admin = await asyncpg.connect(admin_dsn, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise BenchError(f"cannot reach PostgreSQL at {admin_dsn}: {exc}") from exc
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    dsn = with_database(admin_dsn, database)
    env = dict(os.environ, NOETL_HOME=str(logs / "home"), COLUMNS="300")
    for name in ("NOETL_SERVER_URL", "NOETL_TOKEN", "NOETL_DATABASE_URL", "NOETL_NATS_URL"):
        env.pop(name, None)
    env.update(NOETL_NATS_STREAM=stream, NOETL_NATS_SUBJECT_PREFIX=f"bench.{run_id}")
    env["NOETL_INDEXER"] = "off"  # the benchmark measures orchestration, not indexing
    port = free_port()
    bench = Cluster(dsn, database, stream, f"http://127.0.0.1:{port}", {}, logs)
    try:
        for who, role in (("operator", "operator"), ("worker", "worker")):
            bench.tokens[who] = _cli(
                env,
                "tokens",
                "create",
                "--name",
                who,
                "--kind",
                "agent",
                "--role",
                role,
                "--database",
                dsn,
            )
        with (logs / "server.log").open("w") as sink:
            bench.server = subprocess.Popen(
                [
                    str(NOETL_AGENT),
                    "server",
                    "--port",
                    str(port),
                    "--database",
                    dsn,
                    "--nats",
                    nats_url,
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        _wait_for_text(logs / "server.log", "serving http", bench.server, 60)
        for n in range(workers):
            with (logs / f"worker{n}.log").open("w") as sink:
                bench.workers.append(
                    subprocess.Popen(
                        [
                            str(NOETL_AGENT),
                            "worker",
                            "--server",
                            bench.url,
                            "--token",
                            bench.tokens["worker"],
                            "--nats",
                            nats_url,
                            "--pool",
                            "cpu",
                            "--concurrency",
                            str(concurrency),
                            "--worker-id",
                            f"bench-w{n}",
                        ],
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=sink,
                    )
                )
        for n, process in enumerate(bench.workers):
            _wait_for_text(logs / f"worker{n}.log", "pool cpu", process, 60)
        yield bench
    finally:
        for running in reversed([bench.server, *bench.workers]):
            if running is not None:
                _stop(running)
        admin = await asyncpg.connect(admin_dsn, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()
        with contextlib.suppress(Exception):
            bus = await NatsCommandBus.connect(nats_url, stream=stream)
            try:
                await bus.delete_stream()
            finally:
                await bus.aclose()


# --------------------------------------------------------------------------- throughput


@dataclass
class Timings:
    """Where the steps of some executions spent their time, from the event log (ms)."""

    scheduling_ms: list[float]
    tool_ms: list[float]

    @classmethod
    def from_rows(cls, rows: Sequence[Any]) -> Timings:
        """Per step run: ``step.started`` -> ``tool.started`` (scheduling) and
        ``tool.started`` -> ``tool.processed`` (the tool run).

        The engine takes a new event's time from the event that caused it, so a step's
        ``step.started`` carries the time of the previous step's ``tool.processed`` (of the
        request, for the first step): scheduling covers the report travelling to the
        server, the engine's decision, storing and announcing the command, and a worker
        fetching, claiming and starting it."""
        by_run: dict[tuple[str, str], dict[str, float]] = {}
        for row in rows:
            if row["step_run_id"] is not None:
                times = by_run.setdefault((row["execution_id"], row["step_run_id"]), {})
                times.setdefault(row["event_type"], row["t"])
        scheduling: list[float] = []
        tool: list[float] = []
        for times in by_run.values():
            if "step.started" in times and "tool.started" in times:
                scheduling.append(1000 * (times["tool.started"] - times["step.started"]))
            if "tool.started" in times and "tool.processed" in times:
                tool.append(1000 * (times["tool.processed"] - times["tool.started"]))
        return cls(scheduling, tool)


@dataclass
class Throughput:
    executions: int
    completed: int
    seconds: float
    steps_per_s: float
    timings: Timings
    unloaded: Timings
    some: Timings  # ``some_at_once`` executions at a time, below the workers' slots
    some_at_once: int
    cpu_busy_pct: float
    ours_cpu_s: float
    server_cpu_s: float
    postgres_cpu_s: float
    load: str
    worker_slots: int = 0  # commands the workers run at once, all together


async def _register(api: httpx.AsyncClient, content: str) -> str:
    response = await api.post("/api/catalog/register", json={"content": content})
    if response.status_code != 200:
        raise BenchError(f"registering a playbook failed: {response.status_code} {response.text}")
    return str(response.json()["path"])


async def _start(api: httpx.AsyncClient, path: str, count: int, in_flight: int) -> list[str]:
    gate = asyncio.Semaphore(in_flight)

    async def one() -> str:
        async with gate:
            response = await api.post("/api/execute", json={"path": path})
        if response.status_code != 202:
            raise BenchError(f"POST /api/execute: {response.status_code} {response.text[:300]}")
        return str(response.json()["execution_id"])

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def _wait_finished(
    conn: Any, bench: Cluster, ids: list[str], timeout: float, poll: float = 0.05
) -> dict[str, str]:
    """Poll the execution table (not the API, to add no load) until none is running."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await conn.fetch(
            "SELECT execution_id, status FROM noetl.execution WHERE execution_id = ANY($1)", ids
        )
        statuses = {r["execution_id"]: r["status"] for r in rows}
        if len(statuses) == len(ids) and "running" not in statuses.values():
            return statuses
        bench.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"executions still running after {timeout} s; logs in {bench.logs}")
        await asyncio.sleep(poll)


async def _step_rows(conn: Any, ids: list[str]) -> list[Any]:
    rows: list[Any] = await conn.fetch(
        """SELECT execution_id, event_type, step_run_id, extract(epoch FROM "timestamp") AS t
           FROM noetl.event
           WHERE execution_id = ANY($1)
             AND event_type IN ('step.started', 'tool.started', 'tool.processed',
                                'playbook.processed')
           ORDER BY execution_id, seq""",
        ids,
    )
    return [
        {
            "execution_id": r["execution_id"],
            "event_type": r["event_type"],
            "step_run_id": r["step_run_id"],
            "t": float(r["t"]),
        }
        for r in rows
    ]


def _postgres_pids() -> list[int]:
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(entry.name))
    return pids


@contextlib.contextmanager
def _profiled(bench: Cluster, folder: Path | None, phase: str) -> Iterator[None]:
    """With ``folder``, record py-spy profiles (speedscope) of the server and the workers
    as ``PHASE-NAME.json``."""
    spy = Path(sys.executable).parent / "py-spy"
    if folder is None or not spy.exists():
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    names = ["server", *(f"worker{n}" for n in range(len(bench.workers)))]
    recorders = [
        subprocess.Popen(
            [
                str(spy),
                "record",
                "--pid",
                str(pid),
                "--rate",
                "250",
                "--subprocesses",
                "--format",
                "speedscope",
                "-o",
                str(folder / f"{phase}-{name}.json"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in zip(names, bench.pids, strict=True)
    ]
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)
        for recorder in recorders:
            recorder.wait(timeout=60)


async def throughput(
    bench: Cluster,
    executions: int,
    warmup: int,
    in_flight: int,
    unloaded: int,
    some_at_once: int = 0,
    some_rounds: int = 0,
    profile: Path | None = None,
) -> Throughput:
    """Run the 5-step playbook ``unloaded`` times one after another, ``some_rounds`` times
    ``some_at_once`` executions together, then ``executions`` times at once; see the
    module docstring."""
    conn = await asyncpg.connect(bench.dsn, timeout=10)
    try:
        async with httpx.AsyncClient(
            base_url=bench.url, headers=bench.headers("operator"), timeout=60
        ) as api:
            path = await _register(api, PLAYBOOK)
            if warmup:
                await _wait_finished(conn, bench, await _start(api, path, warmup, in_flight), 120)
            alone: list[str] = []
            for _ in range(unloaded):
                alone += await _start(api, path, 1, 1)
                await _wait_finished(conn, bench, alone[-1:], 60, poll=0.01)
            some: list[str] = []
            for _ in range(some_rounds if some_at_once else 0):
                batch = await _start(api, path, some_at_once, some_at_once)
                await _wait_finished(conn, bench, batch, 60, poll=0.01)
                some += batch
            load = loadavg()
            pg = _postgres_pids()
            with _profiled(bench, profile, "throughput"):
                busy0, total0 = cpu_busy()
                ours0, pg0 = process_cpu(bench.pids), process_cpu(pg)
                server0 = process_cpu(bench.pids[:1])
                t0 = time.time()
                ids = await _start(api, path, executions, in_flight)
                statuses = await _wait_finished(conn, bench, ids, 600)
                busy1, total1 = cpu_busy()
                ours1, pg1 = process_cpu(bench.pids), process_cpu(pg)
                server1 = process_cpu(bench.pids[:1])
        rows = await _step_rows(conn, ids)
        alone_rows = await _step_rows(conn, alone)
        some_rows = await _step_rows(conn, some)
    finally:
        await conn.close()
    completed = sum(1 for s in statuses.values() if s == "completed")
    end = max((r["t"] for r in rows if r["event_type"] == "playbook.processed"), default=t0)
    seconds = end - t0
    return Throughput(
        executions=executions,
        completed=completed,
        seconds=seconds,
        steps_per_s=completed * STEPS / seconds if seconds > 0 else 0.0,
        timings=Timings.from_rows(rows),
        unloaded=Timings.from_rows(alone_rows),
        some=Timings.from_rows(some_rows),
        some_at_once=some_at_once,
        cpu_busy_pct=100 * (busy1 - busy0) / max(total1 - total0, 1),
        ours_cpu_s=ours1 - ours0,
        server_cpu_s=server1 - server0,
        postgres_cpu_s=pg1 - pg0,
        load=load,
    )


# --------------------------------------------------------------------------- ingestion


@dataclass
class Round:
    """One round of the ingestion comparison: the API took ``api_s`` for ``events``
    events, a COPY of the very rows it stored took ``copy_s`` (median of the repeats);
    CPU seconds of the server and of PostgreSQL during the API part, of PostgreSQL
    during one COPY."""

    events: int
    api_s: float
    copy_s: float
    server_cpu_s: float
    api_pg_cpu_s: float = 0.0
    copy_pg_cpu_s: float = 0.0

    @property
    def ratio(self) -> float:
        return self.copy_s / self.api_s


@dataclass
class Ingestion:
    batch: int
    clients: int
    rounds: list[Round]

    @property
    def events(self) -> int:
        return sum(r.events for r in self.rounds)

    @property
    def api_rate(self) -> float:
        return statistics.median(r.events / r.api_s for r in self.rounds)

    @property
    def copy_rate(self) -> float:
        return statistics.median(r.events / r.copy_s for r in self.rounds)

    @property
    def ratio(self) -> float:
        """The median over rounds of API rate ÷ COPY rate (each round measures both under
        the same load)."""
        return statistics.median(r.ratio for r in self.rounds)

    @property
    def server_us_per_event(self) -> float:
        return 1e6 * sum(r.server_cpu_s for r in self.rounds) / self.events

    @property
    def api_pg_us_per_event(self) -> float:
        return 1e6 * sum(r.api_pg_cpu_s for r in self.rounds) / self.events

    @property
    def copy_pg_us_per_event(self) -> float:
        return 1e6 * sum(r.copy_pg_cpu_s for r in self.rounds) / self.events

    @property
    def ratio_quartiles(self) -> tuple[float, float]:
        """The first and third quartiles of the per-round ratios."""
        ratios = [r.ratio for r in self.rounds]
        return percentile(ratios, 25) or 0.0, percentile(ratios, 75) or 0.0


COPY_REPEATS = 3  # COPYs of each round's rows; the round takes the median
INGEST_LEASE = 600  # seconds the ingestion's claims last: longer than its rounds take


def _report_events(
    execution_id: str, step_run_id: str, batch: int, size: int
) -> list[dict[str, Any]]:
    """``size`` events as a worker reports the inner tools of a long pipeline: each tool's
    ``tool.started`` and its partial ``tool.processed`` (stored, no decision to take)."""
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    events: list[dict[str, Any]] = []
    for k in range(size // 2):
        index = batch * size + k
        common = {
            "execution_id": execution_id,
            "timestamp": stamp,
            "entity_type": "tool",
            "entity_id": f"start.t{index}",
            "parent_id": f"step:{step_run_id}",
            "step_run_id": step_run_id,
        }
        events.append(
            {
                **common,
                "event_id": f"{execution_id}:{step_run_id}:{index}:start",
                "event_type": "tool.started",
                "attempt": 1,
                "status": "in_progress",
            }
        )
        events.append(
            {
                **common,
                "event_id": f"{execution_id}:{step_run_id}:{index}:done",
                "event_type": "tool.processed",
                "attempt": 1,
                "status": "success",
                "duration_ms": 3,
                "payload": {
                    "output": {"rows": index, "path": f"/data/part-{index:05d}.parquet"},
                    "error": None,
                    "action": "continue",
                    "rule": None,
                    "attempts": 1,
                    "set": {},
                    "meta": {
                        "usage": {"wall_ms": 3.1, "cpu_ms": 2.4, "peak_rss_kb": 31200},
                        "scope": "tool",
                    },
                    "tool": f"t{index}",
                    "kind": "python",
                    "pipeline_index": index,
                    "partial": True,
                },
            }
        )
    return events


async def _idle_executions(bench: Cluster, conn: Any, count: int) -> dict[str, str]:
    """Start ``count`` executions whose one step waits in a pool no worker serves, and
    claim each step's command with the worker token (reports are taken only from the
    claim's token); return their step run ids by execution id."""
    async with httpx.AsyncClient(
        base_url=bench.url, headers=bench.headers("operator"), timeout=60
    ) as api:
        path = await _register(api, IDLE_PLAYBOOK)
        ids = await _start(api, path, count, 8)
    deadline = time.monotonic() + 60
    while True:
        rows = await conn.fetch(
            "SELECT execution_id, step_run_id FROM noetl.event"
            " WHERE execution_id = ANY($1) AND event_type = 'step.started'",
            ids,
        )
        if len(rows) == len(ids):
            break
        if time.monotonic() > deadline:
            raise BenchError("the ingestion executions did not start their step in 60 s")
        await asyncio.sleep(0.05)
    runs = {r["execution_id"]: r["step_run_id"] for r in rows}
    async with httpx.AsyncClient(
        base_url=bench.url, headers=bench.headers("worker"), timeout=60
    ) as worker:
        for execution_id, step_run_id in runs.items():
            command = quote(global_id(execution_id, step_run_id), safe="")
            body = {"worker_id": "bench-ingestion", "lease_seconds": INGEST_LEASE}
            response = await worker.post(f"/api/commands/{command}/claim", json=body)
            if response.status_code != 200:
                raise BenchError(f"claiming {command}: {response.status_code} {response.text}")
    return runs


async def _backends(conn: Any, database: str) -> list[int]:
    """PostgreSQL backend pids serving ``database``, this connection's excluded."""
    rows = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )
    return [int(r["pid"]) for r in rows]


async def _post_all(senders: list[httpx.AsyncClient], bodies: list[list[bytes]]) -> None:
    """Each client posts its bodies one after another, all clients at once."""

    async def send(http: httpx.AsyncClient, mine: list[bytes]) -> None:
        for content in mine:
            response = await http.post("/api/events/batch", content=content)
            if response.status_code != 200:
                raise BenchError(f"ingestion: {response.status_code} {response.text[:300]}")

    await asyncio.gather(*(send(http, mine) for http, mine in zip(senders, bodies, strict=True)))


async def ingestion(
    bench: Cluster,
    events: int,
    batch: int,
    clients: int,
    executions: int,
    rounds: int,
    profile: Path | None = None,
) -> Ingestion:
    """API ingestion against COPY of the same rows, in interleaved rounds; see the module
    docstring."""
    conn = await asyncpg.connect(bench.dsn, timeout=10)
    # One HTTP client per sender for the whole run, like a worker's (made outside the
    # clock: building one loads the TLS trust store, tens of ms).
    senders = [
        httpx.AsyncClient(
            base_url=bench.url,
            headers={**bench.headers("worker"), "Content-Type": "application/json"},
            timeout=60,
        )
        for _ in range(clients)
    ]
    try:
        runs = await _idle_executions(bench, conn, executions)
        ids = list(runs)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS noetl.copy_baseline (LIKE noetl.event INCLUDING ALL)"
        )
        selected = ", ".join(
            "payload::text" if c == "payload" else f'"{c}"' for c in EVENT_COPY_COLUMNS
        )
        per_round = max(events // rounds // batch, 1)
        results: list[Round] = []
        mine = [conn.get_server_pid()]
        # Round -1 warms the path up; with ``profile`` one more round is recorded. Neither
        # is counted.
        for n in range(-1, rounds + (1 if profile else 0)):
            # Client c serves the executions with index % clients == c, like workers that
            # each run their own commands; each client sends one batch at a time.
            bodies: list[list[bytes]] = [[] for _ in range(clients)]
            for k in range(per_round):
                b = (n + 1) * per_round + k
                execution_id = ids[b % len(ids)]
                body = {"events": _report_events(execution_id, runs[execution_id], b, batch)}
                bodies[(b % len(ids)) % clients].append(json.dumps(body).encode())
            mark = await conn.fetchval("SELECT COALESCE(max(id), 0) FROM noetl.event")
            backends = await _backends(conn, bench.database)
            cpu0, pg0 = process_cpu(bench.pids[:1]), process_cpu(backends)
            with _profiled(bench, profile if n == rounds else None, "ingestion"):
                t0 = time.perf_counter()
                await _post_all(senders, bodies)
                api_s = time.perf_counter() - t0
            cpu1, pg1 = process_cpu(bench.pids[:1]), process_cpu(backends)
            records = [
                tuple(r)
                for r in await conn.fetch(
                    f"SELECT {selected} FROM noetl.event"
                    " WHERE id > $1 AND execution_id = ANY($2) ORDER BY id",
                    mark,
                    ids,
                )
            ]
            if len(records) != per_round * batch:
                raise BenchError(f"ingestion stored {len(records)} of {per_round * batch} events")
            copies: list[tuple[float, float]] = []
            for _ in range(COPY_REPEATS):
                await conn.execute("TRUNCATE noetl.copy_baseline")
                copy0 = process_cpu(mine)
                t0 = time.perf_counter()
                await conn.copy_records_to_table(
                    "copy_baseline",
                    records=records,
                    columns=list(EVENT_COPY_COLUMNS),
                    schema_name="noetl",
                )
                copies.append((time.perf_counter() - t0, process_cpu(mine) - copy0))
            copy_s, copy_cpu = sorted(copies)[len(copies) // 2]
            if 0 <= n < rounds:
                results.append(Round(len(records), api_s, copy_s, cpu1 - cpu0, pg1 - pg0, copy_cpu))
    finally:
        for http in senders:
            await http.aclose()
        await conn.close()
    return Ingestion(batch, clients, results)


# --------------------------------------------------------------------------- report


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _latency_row(label: str, timings: Timings) -> str:
    p50 = percentile(timings.scheduling_ms, 50)
    p95 = percentile(timings.scheduling_ms, 95)
    t50 = percentile(timings.tool_ms, 50)
    t95 = percentile(timings.tool_ms, 95)
    return (
        f"| {label} | {len(timings.scheduling_ms)} | {_ms(p50)} | {_ms(p95)} | {_ms(t50)} |"
        f" {_ms(t95)} |"
    )


def render_markdown(meta: list[str], run: Throughput, ingest: Ingestion, notes: list[str]) -> str:
    """The "Distributed" section of RESULTS.md, markers included."""
    alone = percentile(run.unloaded.scheduling_ms, 50)
    loaded = percentile(run.timings.scheduling_ms, 50)
    runnable = run.executions / run.steps_per_s * 1000 if run.steps_per_s else None
    out = [MARK_START, "## Distributed (server + 2 workers)", ""]
    out += [f"- {line}" for line in meta]
    out += [
        "",
        "### Goals",
        "",
        "| Goal | Target | Measured | Result |",
        "|---|---:|---:|---:|",
        f"| Throughput, {run.executions} executions x {STEPS} python steps at once | ≥ "
        f"{GOAL_STEPS_PER_S:.0f} steps/s | {run.steps_per_s:.0f} steps/s | "
        f"{_verdict(run.steps_per_s >= GOAL_STEPS_PER_S and run.completed == run.executions)} |",
        f"| Scheduling p50, `step.started` → `tool.started`, one execution at a time | "
        f"< {GOAL_SCHEDULING_P50_MS:.0f} ms | {_ms(alone)} | "
        f"{_verdict(alone is not None and alone < GOAL_SCHEDULING_P50_MS)} |",
        f"| Scheduling p50 during the throughput run: the wait for a free worker slot"
        f" (Little's law ≈ {_ms(runnable)}) | — | {_ms(loaded)} | (informational) |",
        f"| Ingestion through the API ÷ raw COPY, same rows, same database | "
        f"≥ {GOAL_INGEST_RATIO:.0%} | {ingest.ratio:.0%} | "
        f"{_verdict(ingest.ratio >= GOAL_INGEST_RATIO)} |",
        "",
        "### Throughput run",
        "",
        "| Figure | Value |",
        "|---|---:|",
        f"| Executions completed | {run.completed} of {run.executions} |",
        f"| Wall time, first `POST /api/execute` → last `playbook.processed` | "
        f"{run.seconds:.2f} s |",
        f"| Steps per second | {run.steps_per_s:.0f} |",
        f"| CPU busy on the machine during the run (all processes, all users) | "
        f"{run.cpu_busy_pct:.0f}% |",
        f"| CPU time of server + workers (with their python children) / of PostgreSQL | "
        f"{run.ours_cpu_s:.1f} s / {run.postgres_cpu_s:.1f} s |",
        f"| Server CPU per step | {1000 * run.server_cpu_s / max(run.completed * STEPS, 1):.2f}"
        " ms |",
        "",
        "### Step timings from the event log",
        "",
        "| Run | Steps | Scheduling p50 | Scheduling p95 | Tool run p50 | Tool run p95 |",
        "|---|---:|---:|---:|---:|---:|",
        _latency_row("one execution at a time", run.unloaded),
        _latency_row(
            f"{run.some_at_once} at once (below the {run.worker_slots} worker slots), rounds",
            run.some,
        ),
        _latency_row(f"{run.executions} at once (throughput run)", run.timings),
        "",
        "### Ingestion",
        "",
        f"{len(ingest.rounds)} rounds after an untimed one, each posting"
        f" {ingest.rounds[0].events} events through the API and then copying the same stored"
        f" rows {COPY_REPEATS} times (the round takes the median COPY); the rates are the"
        " medians over rounds, the ratio the median of the per-round ratios.",
        "",
        "| Path | Events per round | Events/s (median) |",
        "|---|---:|---:|",
        f"| `POST /api/events/batch`, {ingest.batch} per batch, {ingest.clients} clients one"
        f" batch at a time | {ingest.rounds[0].events} | {ingest.api_rate:,.0f} |",
        f"| Binary COPY of the same rows (`copy_records_to_table`) | {ingest.rounds[0].events}"
        f" | {ingest.copy_rate:,.0f} |",
        f"| Ratio API ÷ COPY (per round: "
        f"{', '.join(f'{r.ratio:.0%}' for r in ingest.rounds)}) | | {ingest.ratio:.0%} |",
        f"| Ratio, first and third quartile of the rounds | | {ingest.ratio_quartiles[0]:.0%}"
        f" to {ingest.ratio_quartiles[1]:.0%} |",
        f"| Server CPU per ingested event | | {ingest.server_us_per_event:.0f} µs |",
        f"| PostgreSQL CPU per event: API path / COPY (backends of the benchmark's database)"
        f" | | {ingest.api_pg_us_per_event:.0f} µs / {ingest.copy_pg_us_per_event:.0f} µs |",
        "",
        "### Notes",
        "",
        "- The engine takes a new event's time from the event that caused it, so a step's"
        " `step.started` carries the time of the previous step's `tool.processed` (of the"
        " request, for the first step): scheduling covers the report reaching the server, the"
        " decision, storing and announcing the command on NATS, and a worker fetching,"
        " claiming and starting it.",
        f"- With all {run.executions} executions started at once, every execution has a step"
        " waiting for a worker almost all the time, so a step waits about executions ÷"
        f" throughput ≈ {_ms(runnable)} (Little's law) whatever the dispatch path costs: the"
        " loaded figure measures that queue; the one-at-a-time figure measures the path. With"
        f" {run.some_at_once} at once every step finds a free worker slot, but the server"
        " decides one report at a time (its CPU per step is above), so steps queue there:"
        " that row shows how the path grows with executions in flight.",
    ]
    out += [f"- {note}" for note in notes]
    out += ["", MARK_END]
    return "\n".join(out)


def write_results(path: Path, section: str) -> None:
    """Replace the distributed section of ``path`` (other sections are kept)."""
    write_section(path, section, MARK_START, MARK_END)


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m evals.bench.distributed", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--executions", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10, help="untimed executions first")
    parser.add_argument(
        "--unloaded", type=int, default=20, help="executions run one at a time for latency"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8, help="commands per worker")
    parser.add_argument("--in-flight", type=int, default=16, help="concurrent start requests")
    parser.add_argument(
        "--some-at-once",
        type=int,
        default=8,
        help="executions started together for the scheduling figure below saturation (0: skip)",
    )
    parser.add_argument("--some-rounds", type=int, default=5, help="rounds of --some-at-once")
    parser.add_argument("--ingest-events", type=int, default=100_000)
    parser.add_argument(
        "--ingest-batch",
        type=int,
        default=BATCH_SIZE,
        help="events per POST (default: what a worker sends at most)",
    )
    parser.add_argument("--ingest-clients", type=int, default=2)
    parser.add_argument(
        "--compare-batch",
        type=int,
        default=100,
        help="also measure ingestion with batches of this size (0: do not)",
    )
    parser.add_argument("--ingest-executions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10, help="ingestion rounds (API, then COPY)")
    parser.add_argument(
        "--database-url", default=os.environ.get("NOETL_BENCH_ADMIN_DSN", ADMIN_DSN)
    )
    parser.add_argument("--nats", default=os.environ.get("NOETL_BENCH_NATS_URL", NATS_URL))
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-results", action="store_true", help="print only")
    parser.add_argument(
        "--profile",
        type=Path,
        help="record py-spy profiles of the throughput run and of an extra ingestion round here",
    )
    args = parser.parse_args(argv)
    if min(args.executions, args.workers, args.concurrency, args.ingest_batch) < 1:
        parser.error("--executions, --workers, --concurrency and --ingest-batch must be >= 1")
    if args.ingest_batch % 2 or args.ingest_events < args.ingest_batch:
        parser.error("--ingest-batch must be even and at most --ingest-events")
    if args.some_at_once < 0 or args.some_rounds < 0:
        parser.error("--some-at-once and --some-rounds must be >= 0")
    if args.compare_batch < 0 or args.compare_batch % 2:
        parser.error("--compare-batch must be even (0 to skip it)")
    return args


async def run(
    args: argparse.Namespace,
) -> tuple[list[str], Throughput, Ingestion, list[str]]:
    logs = Path(tempfile.mkdtemp(prefix="noetl-bench-"))
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    load_before = loadavg()
    try:
        async with cluster(
            args.database_url, args.nats, args.workers, args.concurrency, logs
        ) as bench:
            result = await throughput(
                bench,
                args.executions,
                args.warmup,
                args.in_flight,
                args.unloaded,
                args.some_at_once,
                args.some_rounds,
                args.profile,
            )
            result.worker_slots = args.workers * args.concurrency
            ingest = await ingestion(
                bench,
                args.ingest_events,
                args.ingest_batch,
                args.ingest_clients,
                args.ingest_executions,
                args.rounds,
                args.profile,
            )
            smaller = None
            if args.compare_batch:
                smaller = await ingestion(
                    bench,
                    args.ingest_events // 2,
                    args.compare_batch,
                    args.ingest_clients,
                    args.ingest_executions,
                    args.rounds,
                )
    except BaseException:
        print(f"logs kept in {logs}", file=sys.stderr)
        raise
    shutil.rmtree(logs, ignore_errors=True)
    info = machine()
    meta = [
        f"Date: {started:%Y-%m-%d %H:%M} UTC; benchmark took {time.perf_counter() - t0:.0f} s",
        f"Machine: {info['nproc']} cores, {info['cpu']}, {info['os']}, Python {info['python']};"
        f" load average (1/5/15 min) {load_before} at the start, {result.load} before the timed"
        f" run, {loadavg()} at the end (the machine is shared)",
        "Services: PostgreSQL and NATS JetStream on this machine; a fresh database and stream"
        " for the run, removed afterwards",
        f"Processes: `noetl-agent server --database --nats`, {args.workers} x `noetl-agent worker"
        f" --concurrency {args.concurrency}`, started through the CLI",
        f"Throughput method: {args.executions} executions of a {STEPS}-step playbook of `python`"
        f' steps (`result = {{"i": n}}`) started at once through `POST /api/execute`'
        f" ({args.in_flight} requests in flight), after {args.warmup} untimed ones and"
        f" {args.unloaded} run one at a time and {args.some_rounds} rounds of"
        f" {args.some_at_once} at once (for the step timings below saturation)",
        f"Ingestion method: {args.ingest_events} tool events of {args.ingest_executions}"
        f" executions ({args.ingest_batch} per batch, one execution per batch,"
        f" {args.ingest_clients} clients each sending one batch at a time) vs one binary COPY"
        " of the same stored rows into a table with the event table's columns and indexes",
    ]
    notes = []
    if smaller is not None:
        notes.append(
            f"Smaller reports, {smaller.batch} events per batch (what a worker sends when fewer"
            f" events wait), measured the same way: {smaller.api_rate:,.0f} events/s through"
            f" the API, {smaller.ratio:.0%} of COPY (per round: "
            f"{', '.join(f'{r.ratio:.0%}' for r in smaller.rounds)}); the server's cost per"
            " request (authentication, a statement) weighs more per event."
        )
    return meta, result, ingest, notes


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        meta, result, ingest, notes = asyncio.run(run(args))
    except BenchError as exc:
        print(f"distributed benchmark failed: {exc}", file=sys.stderr)
        return 1
    section = render_markdown(meta, result, ingest, notes)
    print(section)
    if not args.no_results:
        write_results(args.results, section)
        print(f"results written to {args.results}")
    return 0 if result.completed == result.executions else 1


if __name__ == "__main__":
    raise SystemExit(main())
