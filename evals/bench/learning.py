"""Learning benchmark: indexing throughput and memory, and search latency at scale.

``python -m evals.bench.learning`` (also run by ``make bench``) measures, on this machine:

* **Indexing throughput**: a realistic event log is made by really running playbooks on
  an embedded engine (a temporary SQLite file): a five-step ETL playbook that succeeds,
  the failing playbooks of the retrieval eval (:mod:`evals.retrieval.corpus`) and a step
  that fails three times under a retry policy. In a separate process (so its memory is
  its own; the searches below run there afterwards), the model is loaded and warmed up
  and the store's first write made, then each round runs the production
  :class:`~learning.indexer.Indexer` over the whole log into a fresh local Qdrant folder,
  and ``model.encode`` of exactly the texts the indexer embedded (every stored
  document's text, and each failure's message), read back from that index, in one call
  with the embedder's batch size, normalised, in a thread of the same CPU priority as
  the indexer's. Rounds after the first alternate which of the two goes first, so that
  a change in the machine's load favours neither. Throughput is texts per second; the
  ratio is indexer ÷ raw encode (median of the rounds' ratios; also given in CPU time of
  the process, which other processes on a shared machine inflate less). The goal is at
  least 85 %.
* **Indexer memory**: the peak resident set (``VmHWM``) of that process during the first
  indexing pass (the high-water mark is reset after the model is loaded, where Linux
  allows it), next to its resident set with the model loaded.
* **Search latency** of ``Searcher.search_history(text, kind="failures", k=10)`` (no
  filter: one query embedding plus one Qdrant query and the deduplication), in local
  mode, with 10k and 100k failures indexed. Those points are written through
  ``VectorStore.upsert`` in batches: their payloads are the indexed failures' payloads
  with fresh ids, and their vectors the indexed failures' vectors plus Gaussian noise,
  re-normalised (so they cluster like real documents). The index is closed and opened
  again before timing, as a new process would. The query texts are distinct (none is
  timed twice): the retrieval eval's descriptions, the failure messages, and the messages
  as reported from their steps. Reported: p50/p95 of the whole call, and p50 of its
  parts (the query embedding alone, the store query alone), with the load average.

The "Learning" section of ``evals/RESULTS.md`` (between ``<!-- learning:start -->`` and
``<!-- learning:end -->``) is replaced; the rest of the file is kept. A missed goal is
reported as FAIL, not as an error; the exit status is 1 only when the benchmark could not
run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evals.bench.engine import machine
from evals.results import RESULTS, write_section

MARK_START = "<!-- learning:start -->"
MARK_END = "<!-- learning:end -->"
GOAL_THROUGHPUT_RATIO = 0.85
GOAL_P50_MS = 30.0
GOAL_SIZE = 100_000  # the latency goal is stated at this many documents
ROOT = Path(__file__).resolve().parents[2]
NOISE = 0.02  # per-coordinate noise added to real vectors for the synthetic points
UPSERT_BATCH = 1000
CONCURRENCY = 16  # executions in flight while the event log is made
K = 10
WARM_UP = ("warm up the search", "a query that is not timed", "and one more")

ETL = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata:
  name: nightly_orders
  path: bench/nightly_orders
  description: >-
    Extract the day's orders from the shop database, clean and enrich them with customer
    segments, aggregate revenue by region and publish the daily sales report
workload:
  day: "2026-11-30"
  region: north
  limit: 50
workflow:
  - step: start
    desc: Extract the day's orders for one region
    input: {day: "{{ day }}", region: "{{ region }}", limit: "{{ limit }}"}
    tool:
      kind: python
      code: |
        def main(day, region, limit):
            n = int(limit)
            return {"rows": [{"id": i, "region": region, "amount": i * 7 % 90} for i in range(n)]}
    next: {arcs: [{step: clean}]}
  - step: clean
    desc: Drop orders without an amount and normalise the currency
    input: {rows: "{{ start.rows }}"}
    tool:
      kind: python
      code: |
        def main(rows):
            return {"rows": [r for r in rows if r["amount"]]}
    next: {arcs: [{step: enrich}]}
  - step: enrich
    desc: Join each order with the customer's segment from the CRM
    input: {rows: "{{ clean.rows }}"}
    tool:
      kind: python
      code: |
        def main(rows):
            return {"rows": [dict(r, segment="smb" if r["id"] % 3 else "enterprise") for r in rows]}
    next: {arcs: [{step: aggregate}]}
  - step: aggregate
    desc: Sum revenue and count orders per segment
    input: {rows: "{{ enrich.rows }}"}
    tool:
      kind: python
      code: |
        def main(rows):
            totals = {}
            for r in rows:
                totals[r["segment"]] = totals.get(r["segment"], 0) + r["amount"]
            return {"totals": totals, "orders": len(rows)}
    next: {arcs: [{step: publish}]}
  - step: publish
    desc: Publish the daily sales report to the reporting bucket
    input: {totals: "{{ aggregate.totals }}", day: "{{ day }}"}
    tool:
      kind: python
      code: |
        def main(totals, day):
            return {"report": f"sales-{day}.json", "segments": len(totals)}
"""

FLAKY = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata:
  name: partner_sync
  path: bench/partner_sync
  description: "Push the catalogue changes to the partner API, retrying dropped connections"
workload:
  partner: acme
workflow:
  - step: start
    tool: {kind: noop}
    next: {arcs: [{step: push}]}
  - step: push
    desc: Send the changed products to the partner's API
    input: {partner: "{{ partner }}"}
    tool:
      kind: python
      code: |
        def main(partner):
            raise ConnectionResetError(
                f"connection to api.{partner}.example:8443 was reset by the peer"
            )
      spec:
        policy:
          rules:
            - when: "{{ output.status == 'error' }}"
              then: {do: retry, attempts: 3, backoff: none, delay: 0}
"""

REGIONS = ("north", "south", "east", "west", "central")


# ---------------------------------------------------------------------------- the log


async def build_log(folder: Path, executions: int) -> dict[str, int]:
    """Run ``executions`` real executions into ``folder/noetl.db``: six in ten of the ETL
    playbook, three failing playbooks of the retrieval corpus, one retried failure."""
    from engine.adapters.sqlite.stores import SqliteDatabase
    from engine.runtime.embedded import Engine
    from evals.retrieval.corpus import playbook
    from evals.retrieval.raised import RAISED_FAMILIES

    db = SqliteDatabase.open(folder / "noetl.db")
    engine = Engine(db.events, db.catalog, lock_dir=folder / "locks")
    variants = [variant for family in RAISED_FAMILIES for variant in family.variants]
    try:
        plan: list[tuple[str, dict[str, Any]]] = []
        etl = (await engine.register(ETL)).path
        flaky = (await engine.register(FLAKY)).path
        failing = [(await engine.register(playbook(v))).path for v in variants]
        for n in range(executions):
            slot = n % 10
            if slot < 6:
                workload = {"day": f"2026-11-{1 + n % 30:02d}", "region": REGIONS[n % 5]}
                plan.append((etl, workload | {"limit": 20 + n % 40}))
            elif slot < 9:
                plan.append((failing[(n // 10 * 3 + slot - 6) % len(failing)], {}))
            else:
                plan.append((flaky, {"partner": f"partner{n % 7}"}))
        gate = asyncio.Semaphore(CONCURRENCY)
        statuses: dict[str, int] = {}

        async def one(path: str, workload: dict[str, Any]) -> None:
            async with gate:
                execution_id = await engine.execute(path, workload=workload)
                outcome = await engine.wait(execution_id, timeout=120)
                statuses[outcome.status] = statuses.get(outcome.status, 0) + 1

        await asyncio.gather(*(one(path, workload) for path, workload in plan))
        events = len(await db.events.read_all(0, 10**9))
    finally:
        await engine.aclose()
        db.close()
    return {"executions": executions, "events": events, **statuses}


# ---------------------------------------------------------------------------- indexing


def _memory() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in kB (empty where /proc is missing)."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
    return found


def _reset_peak() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0); whether it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _stored_texts(store: Any) -> list[str]:
    """The texts the indexer embedded, from what it stored: each document's text, and
    each failure's message as it is embedded (by its cause)."""
    from learning.documents import normalise_error
    from learning.vector_store import KINDS

    texts: list[str] = []
    for kind in KINDS:
        for point in store.scan(kind):
            texts.append(str(point.payload["text"]))
            if kind == "failures":
                texts.append(normalise_error(str(point.payload["message"])))
    return texts


async def _index_rounds(db_path: Path, work: Path, rounds: int) -> dict[str, Any]:
    from engine.adapters.sqlite.stores import SqliteDatabase
    from learning.embedder import shared_embedder
    from learning.indexer import NICENESS, Indexer
    from learning.offload import offload
    from learning.vector_store import TEXT, IndexLocation, VectorStore, close_all, point_id

    embedder = shared_embedder()
    model = embedder._load()
    embedder.embed(["warm up the model", "and its tokenizer"])
    model.encode(["warm up encode", "as well"], show_progress_bar=False)
    import torch

    warm = VectorStore.open(IndexLocation.local(work / "warm-up"))  # imports, first writes
    warm.upsert("steps", [(point_id("steps", "warm"), {TEXT: [1.0] + [0.0] * 383}, {})])
    warm.set_cursor("warm-up", 1)

    loaded = _memory()
    peak_reset = _reset_peak()
    db = SqliteDatabase.open(db_path)
    indexer_s: list[float] = []
    raw_s: list[float] = []
    indexer_cpu_s: list[float] = []
    raw_cpu_s: list[float] = []
    peak_kb = 0
    documents = 0
    texts: list[str] = []
    loads: list[float] = []

    async def index(round_: int) -> None:
        nonlocal documents, texts, peak_kb
        store = VectorStore.open(IndexLocation.local(work / f"qdrant-{round_}"))
        indexer = Indexer(db.events, db.catalog, store, embedder=embedder)
        started, cpu = time.perf_counter(), time.process_time()
        report = await indexer.run_once()
        indexer_s.append(time.perf_counter() - started)
        indexer_cpu_s.append(time.process_time() - cpu)
        if round_ == 0:
            peak_kb = _memory().get("VmHWM", 0)
            documents = report.documents
            texts = _stored_texts(store)  # what every round embeds
        close_all()  # each round starts with no index in memory
        gc.collect()

    def encode() -> None:
        model.encode(
            texts,
            batch_size=embedder.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    async def raw() -> None:
        started, cpu = time.perf_counter(), time.process_time()
        await offload(encode, name="raw-encode", niceness=NICENESS)
        raw_s.append(time.perf_counter() - started)
        raw_cpu_s.append(time.process_time() - cpu)
        gc.collect()

    try:
        await index(0)  # the first round indexes first: raw encode needs its texts
        await raw()
        loads.append(os.getloadavg()[0])
        for round_ in range(1, rounds):
            # Alternate which goes first, so a change of load during a round favours
            # neither side over the rounds.
            if round_ % 2:
                await raw()
                await index(round_)
            else:
                await index(round_)
                await raw()
            loads.append(os.getloadavg()[0])
        close_all()
    finally:
        db.close()
    return {
        "documents": documents,
        "texts": len(texts),
        "indexer_s": indexer_s,
        "raw_s": raw_s,
        "indexer_cpu_s": indexer_cpu_s,
        "raw_cpu_s": raw_cpu_s,
        "loads": loads,
        "batch_size": embedder.batch_size,
        "torch_threads": torch.get_num_threads(),
        "rss_model_mb": round(loaded.get("VmRSS", 0) / 1024, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "peak_reset": peak_reset,
    }


@dataclass
class Indexing:
    """Indexing throughput against raw ``model.encode``, and the indexer's memory."""

    executions: int
    events: int
    documents: int
    texts: int
    indexer_s: list[float]
    raw_s: list[float]
    indexer_cpu_s: list[float]
    raw_cpu_s: list[float]
    loads: list[float]  # the 1-minute load average after each round
    batch_size: int
    torch_threads: int
    rss_model_mb: float
    peak_rss_mb: float
    peak_reset: bool
    log_s: float = 0.0

    @property
    def indexer_rate(self) -> float:
        """Texts embedded and stored per second by the indexer (median round)."""
        return self.texts / statistics.median(self.indexer_s)

    @property
    def raw_rate(self) -> float:
        """Texts per second of ``model.encode`` alone (median round)."""
        return self.texts / statistics.median(self.raw_s)

    @property
    def ratio(self) -> float:
        """Median over rounds of raw time ÷ indexer time (same texts, same round)."""
        return statistics.median(r / i for r, i in zip(self.raw_s, self.indexer_s, strict=True))

    @property
    def cpu_ratio(self) -> float:
        """The same with CPU time of the process, which other processes on the machine
        do not inflate."""
        pairs = zip(self.raw_cpu_s, self.indexer_cpu_s, strict=True)
        return statistics.median(r / i for r, i in pairs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "indexer_texts_per_s": round(self.indexer_rate, 1),
            "raw_texts_per_s": round(self.raw_rate, 1),
            "ratio": round(self.ratio, 3),
            "cpu_ratio": round(self.cpu_ratio, 3),
        }


def measure(
    folder: Path, executions: int, rounds: int, sizes: Sequence[int], samples: int
) -> tuple[Indexing, list[Latency]]:
    """Make the log here, then index it and time searches in a child process, whose
    memory is then the indexer's own (see the module docstring)."""
    started = time.monotonic()
    log = asyncio.run(build_log(folder, executions))
    log_s = time.monotonic() - started
    command = [sys.executable, "-m", "evals.bench.learning", "--rounds", str(rounds)]
    command += ["--sizes", ",".join(map(str, sizes)), "--queries", str(samples)]
    command += ["--child", str(folder / "noetl.db"), str(folder / "work")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the benchmark process failed:\n{done.stderr[-3000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    indexing = Indexing(
        log["executions"], log["events"], log_s=round(log_s, 1), **found["indexing"]
    )
    return indexing, [Latency(**item) for item in found["latency"]]


async def child(
    db: Path, work: Path, rounds: int, sizes: Sequence[int], samples: int
) -> dict[str, Any]:
    """The child process: indexing rounds, then the latency of each size."""
    # Qdrant warns that local mode is meant for small collections: measuring that is the point.
    warnings.filterwarnings("ignore", message="Local mode is not recommended")
    indexing = await _index_rounds(db, work, rounds)
    templates = _templates(work / "qdrant-0")
    queries = query_texts(templates)
    latency = [
        asdict(measure_latency(work, size, templates, queries, samples)) for size in sorted(sizes)
    ]
    return {"indexing": indexing, "latency": latency}


# ---------------------------------------------------------------------------- latency


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``values``, interpolating between ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Latency:
    """Search latency with ``size`` failures in the index (milliseconds)."""

    size: int
    queries: int
    p50_ms: float
    p95_ms: float
    cpu_p50_ms: float
    embed_p50_ms: float
    store_p50_ms: float
    store_p95_ms: float
    similar_p50_ms: float  # similar_failures(text=..., k=10): centred on the failures' mean
    similar_p95_ms: float
    build_s: float
    open_s: float
    rss_mb: float  # resident set of the process with this index open
    load: float  # the 1-minute load average after the timed searches

    @property
    def passed(self) -> bool | None:
        return self.p50_ms <= GOAL_P50_MS if self.size >= GOAL_SIZE else None


def _templates(index: Path) -> list[tuple[dict[str, list[float]], dict[str, Any]]]:
    """(vectors by name, payload) of every failure in the index at ``index``."""
    from learning.vector_store import IndexLocation, VectorStore, vector_names

    store = VectorStore.open(IndexLocation.local(index))
    names = vector_names("failures")
    by_name = {
        name: {p.id: p for p in store.scan("failures", with_vectors=True, using=name)}
        for name in names
    }
    first = by_name[names[0]]
    templates = []
    for pid, point in first.items():
        vectors = {name: by_name[name][pid].vector for name in names}
        if all(vector is not None for vector in vectors.values()):
            templates.append(({n: list(v or []) for n, v in vectors.items()}, point.payload))
    return templates


def _fill(store: Any, size: int, templates: list[Any], seed: int = 7) -> None:
    """Upsert ``size`` failures made from ``templates`` (see the module docstring)."""
    import numpy as np

    from learning.vector_store import point_id

    rng = np.random.default_rng(seed)
    names = list(templates[0][0])
    bases = {name: np.array([t[0][name] for t in templates], dtype=np.float32) for name in names}
    for start in range(0, size, UPSERT_BATCH):
        count = min(UPSERT_BATCH, size - start)
        picks = rng.integers(0, len(templates), count)
        vectors: dict[str, Any] = {}
        for name in names:
            noisy = bases[name][picks] + rng.normal(0, NOISE, (count, bases[name].shape[1]))
            vectors[name] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
        items = []
        for row, pick in enumerate(picks):
            n = start + row
            execution_id = str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | n))
            payload = dict(templates[pick][1])
            payload.update(execution_id=execution_id, event_id=f"ev-{n}", seq=n + 1)
            payload["step_run_id"] = f"{payload.get('step')}#{n}"
            named = {name: vectors[name][row].tolist() for name in names}
            items.append((point_id("failures", f"{execution_id}/ev-{n}"), named, payload))
        store.upsert("failures", items)


def measure_latency(
    folder: Path, size: int, templates: list[Any], queries: list[str], samples: int
) -> Latency:
    """Index ``size`` failures in a fresh local folder, reopen it and time searches."""
    from learning.embedder import shared_embedder
    from learning.search import Searcher
    from learning.vector_store import IndexLocation, VectorStore, close_all

    location = IndexLocation.local(folder / f"latency-{size}")
    started = time.monotonic()
    _fill(VectorStore.open(location), size, templates)
    build_s = time.monotonic() - started
    close_all()
    started = time.monotonic()
    store = VectorStore.open(location)
    store.count("failures")
    open_s = time.monotonic() - started
    resident = _memory().get("VmRSS", 0)
    embedder = shared_embedder()
    searcher = Searcher(store, embedder)
    texts = queries[:samples]  # each timed once: no query repeats
    for text in WARM_UP:
        searcher.search_history(text, "failures", k=K)
        searcher.similar_failures(text=text, k=K)
    total: list[float] = []
    similar: list[float] = []
    cpu: list[float] = []
    embed: list[float] = []
    query: list[float] = []
    for text in texts:
        started, used = time.perf_counter(), time.process_time()
        hits = searcher.search_history(text, "failures", k=K)
        total.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - used) * 1000)
        if len(hits) != min(K, size):
            raise RuntimeError(f"a search returned {len(hits)} hits of {size} documents")
        started = time.perf_counter()
        found = searcher.similar_failures(text=text, k=K)
        similar.append((time.perf_counter() - started) * 1000)
        if len(found) != min(K, size):
            raise RuntimeError(f"similar_failures returned {len(found)} hits of {size}")
        started = time.perf_counter()
        vector = embedder.embed([text])[0]
        embed.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        store.query("failures", vector, limit=K * 2)
        query.append((time.perf_counter() - started) * 1000)
    close_all()
    return Latency(
        size=size,
        queries=len(texts),
        p50_ms=round(percentile(total, 50), 2),
        p95_ms=round(percentile(total, 95), 2),
        cpu_p50_ms=round(percentile(cpu, 50), 2),
        embed_p50_ms=round(percentile(embed, 50), 2),
        store_p50_ms=round(percentile(query, 50), 2),
        store_p95_ms=round(percentile(query, 95), 2),
        similar_p50_ms=round(percentile(similar, 50), 2),
        similar_p95_ms=round(percentile(similar, 95), 2),
        build_s=round(build_s, 1),
        open_s=round(open_s, 2),
        rss_mb=round(resident / 1024, 1),
        load=round(os.getloadavg()[0], 2),
    )


def query_texts(templates: list[Any]) -> list[str]:
    """Distinct query texts: the retrieval eval's descriptions of failures, the indexed
    messages, then each message as reported from its step."""
    from evals.retrieval.raised import RAISED_FAMILIES

    described = [query for family in RAISED_FAMILIES for query in family.queries]
    messages = sorted({str(payload.get("message")) for _, payload in templates})
    reported = sorted(
        {f"step {payload.get('step')} failed: {payload.get('message')}" for _, payload in templates}
    )
    return list(dict.fromkeys([*described, *messages, *reported]))


# ---------------------------------------------------------------------------- report


@dataclass
class Report:
    indexing: Indexing
    latency: list[Latency]
    seconds: float = 0.0
    date: str = ""
    machine: dict[str, str] = field(default_factory=dict)
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "date": self.date,
            "seconds": self.seconds,
            "machine": self.machine,
            "load": list(self.load),
            "indexing": self.indexing.to_dict(),
            "latency": [asdict(item) | {"passed": item.passed} for item in self.latency],
        }


def _verdict(passed: bool | None) -> str:
    return "—" if passed is None else "PASS" if passed else "FAIL"


def markdown(report: Report) -> str:
    """The report as the Markdown section written into RESULTS.md."""
    index = report.indexing
    box = report.machine
    goal_latency = next((item for item in report.latency if item.size >= GOAL_SIZE), None)
    lines = [
        MARK_START,
        "## Learning (indexing and search)",
        "",
        f"- Date: {report.date}; benchmark took {report.seconds:.0f} s",
        f"- Machine: {box.get('nproc')} cores, {box.get('cpu')}, {box.get('os')}, "
        f"Python {box.get('python')}; load average at the end "
        + ", ".join(f"{value:.2f}" for value in report.load),
        f"- Model: all-MiniLM-L6-v2 on CPU, {index.torch_threads} torch thread(s), "
        f"batch size {index.batch_size}; index: Qdrant local mode (a folder)",
        "",
        "### Goals",
        "",
        "| Goal | Target | Measured | Result |",
        "|---|---:|---:|---:|",
        f"| Indexing throughput ÷ raw `model.encode` | ≥ {GOAL_THROUGHPUT_RATIO:.0%} | "
        f"{index.ratio:.0%} | {_verdict(index.ratio >= GOAL_THROUGHPUT_RATIO)} |",
        f"| The same in CPU time of the process | ≥ {GOAL_THROUGHPUT_RATIO:.0%} | "
        f"{index.cpu_ratio:.0%} | {_verdict(index.cpu_ratio >= GOAL_THROUGHPUT_RATIO)} |",
    ]
    if goal_latency is not None:
        lines.append(
            f"| Search p50, top-{K} unfiltered, {goal_latency.size:,} documents | "
            f"≤ {GOAL_P50_MS:.0f} ms | {goal_latency.p50_ms:.1f} ms | "
            f"{_verdict(goal_latency.passed)} |"
        )
    lines += [
        "",
        "### Indexing",
        "",
        f"Event log: {index.executions} real executions ({index.events:,} events) on the "
        f"embedded engine, made in {index.log_s:.0f} s: six in ten a five-step ETL "
        "playbook that succeeds, three in ten the failing playbooks of the retrieval eval, "
        "one in ten a step failing three times under a retry policy. "
        f"{index.documents:,} documents, {index.texts:,} texts embedded "
        "(each document's text, and each failure's message).",
        "",
        "| Round | First | Indexer (`run_once`, fresh index) | raw `model.encode` | "
        "raw ÷ indexer | Indexer CPU | raw CPU | raw ÷ indexer, CPU | load |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rounds = zip(
        index.indexer_s, index.raw_s, index.indexer_cpu_s, index.raw_cpu_s, index.loads, strict=True
    )
    for n, (indexer_s, raw_s, indexer_cpu, raw_cpu, load) in enumerate(rounds, 1):
        first = "raw" if n % 2 == 0 else "indexer"
        lines.append(
            f"| {n} | {first} | {indexer_s:.2f} s | {raw_s:.2f} s | {raw_s / indexer_s:.0%} | "
            f"{indexer_cpu:.2f} s | {raw_cpu:.2f} s | {raw_cpu / indexer_cpu:.0%} | {load:.2f} |"
        )
    lines += [
        "",
        f"Median: indexer {index.indexer_rate:.0f} texts/s, raw encode "
        f"{index.raw_rate:.0f} texts/s. Memory of the indexing process: "
        f"{index.rss_model_mb:.0f} MB resident with the model loaded, peak "
        f"{index.peak_rss_mb:.0f} MB during the first pass"
        + ("" if index.peak_reset else " (peak since the process started)")
        + ".",
        "",
        "### Search latency (local mode)",
        "",
        f"`Searcher.search_history(text, kind='failures', k={K})`: the query embedding, "
        "one unfiltered Qdrant query and the deduplication. Points written through "
        "`VectorStore.upsert`: real failure payloads with fresh ids, real failure vectors "
        "plus Gaussian noise, re-normalised; the index reopened before timing.",
        "",
        "| Documents | Queries | p50 | p95 | CPU p50 | embed p50 | store p50 | store p95 | "
        "similar p50 | similar p95 | build | open | RSS | load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for item in report.latency:
        lines.append(
            f"| {item.size:,} | {item.queries} | {item.p50_ms:.1f} ms | {item.p95_ms:.1f} ms | "
            f"{item.cpu_p50_ms:.1f} ms | {item.embed_p50_ms:.1f} ms | "
            f"{item.store_p50_ms:.1f} ms | {item.store_p95_ms:.1f} ms | "
            f"{item.similar_p50_ms:.1f} ms | {item.similar_p95_ms:.1f} ms | {item.build_s:.0f} s | "
            f"{item.open_s:.1f} s | {item.rss_mb:.0f} MB | {item.load:.2f} |"
        )
    lines += [
        "",
        "p50/p95: wall time of the whole call; CPU p50: CPU time of all the process's "
        "threads during it (on a busy machine the wall time exceeds it by the time the "
        "call waited for a core); embed: the query embedding "
        f"alone; store: `VectorStore.query` alone (top {K * 2}); similar: "
        f"`similar_failures(text=..., k={K})` on the same text (the embedding, the failures' "
        "mean, the centred query and its candidates' vectors); build: writing the points; "
        "open: opening the folder again (local mode loads every point into memory); RSS: "
        "the process's resident set with that index open (the model included); load: the "
        "1-minute load average after the searches. Every query text is distinct, none is "
        "timed twice.",
        "",
        MARK_END,
    ]
    return "\n".join(lines)


def write_results(path: Path, section: str) -> None:
    """Replace the learning section of ``path`` (creating the file if needed)."""
    write_section(path, section, MARK_START, MARK_END)


def run(executions: int, rounds: int, sizes: Sequence[int], samples: int) -> Report:
    """The whole benchmark in a temporary folder."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="noetl-bench-learning-") as name:
        folder = Path(name)
        indexing, latency = measure(folder, executions, rounds, sizes, samples)
    return Report(
        indexing,
        latency,
        seconds=round(time.monotonic() - started, 1),
        date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine(),
        load=os.getloadavg(),
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m evals.bench.learning", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--executions", type=int, help="executions in the log (default 120)")
    parser.add_argument("--rounds", type=int, help="indexing rounds (default 5)")
    parser.add_argument(
        "--sizes", help="comma-separated index sizes for the latency (default 10000,100000)"
    )
    parser.add_argument("--queries", type=int, help="timed searches per size (default 100)")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: small log, small indexes, one round"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown results file")
    parser.add_argument("--no-results", action="store_true", help="print only")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--child", nargs=2, metavar=("DB", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    args.executions = args.executions or (20 if quick else 120)
    args.rounds = args.rounds or (1 if quick else 5)
    args.queries = args.queries or (20 if quick else 100)
    sizes = args.sizes or ("1000,5000" if quick else "10000,100000")
    try:
        args.sizes = [int(part) for part in sizes.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--sizes takes comma-separated whole numbers, got {sizes!r}")
    if not args.sizes or min(args.sizes) < 1 or args.executions < 10 or args.rounds < 1:
        parser.error("--sizes must be positive, --executions at least 10, --rounds at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        db, work = (Path(part) for part in args.child)
        found = asyncio.run(child(db, work, args.rounds, args.sizes, args.queries))
        sys.stdout.write(json.dumps(found) + "\n")
        return 0
    report = run(args.executions, args.rounds, args.sizes, args.queries)
    section = markdown(report)
    sys.stdout.write((json.dumps(report.to_dict(), indent=2) if args.json else section) + "\n")
    if not args.no_results:
        write_results(args.results, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
