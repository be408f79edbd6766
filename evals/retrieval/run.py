"""Retrieval eval: does semantic search find the failures a person describes, and the
past failures like a given one, better than keyword search?

    .venv/bin/python -m evals.retrieval.run [--results evals/RESULTS.md] [--json]
                                            [--corpus real|raised|both] [--no-write]

Builds a labelled corpus (:mod:`evals.retrieval.corpus`, failures produced for real with
a local test server and PostgreSQL; :mod:`evals.retrieval.raised`, a second corpus of
causes that sit closer together) by really running every variant playbook on an embedded
engine (a temporary SQLite file, the corpus's keychain), indexes the executions
with the production indexer (real model, real local Qdrant), and then measures two tasks
for the semantic search and for an Okapi BM25 baseline over the very same document texts:

- **describe**: each family's queries ("cannot reach the database"); relevant are the
  family's failures;
- **similar**: each failure in turn (leave one out); relevant are the other failures of
  its family. Semantic: ``similar_failures(execution_id)``, which compares error
  messages; BM25: the failure's message as the query over the other messages;
- **where**: each failure found by its playbook's description ("Load yesterday's orders
  into the warehouse"), of failures only; relevant is that failure alone. A guard: a
  failure's text vector leans towards its cause (``BLENDED``), and must still be found by
  where it happened (BM25 sees the description word for word, so it should win here).

Metrics, averaged over queries: hit@1 (the first hit is relevant), recall@5 (share of the
relevant found in the first five) and MRR@5 (1 / rank of the first relevant hit, 0 when
none is in the first five). The Markdown tables of both corpora go into
``evals/RESULTS.md`` between ``<!-- retrieval:start -->`` and ``<!-- retrieval:end -->``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.adapters.credentials import MemoryCredentialProvider
from engine.adapters.sqlite.stores import SqliteDatabase
from engine.runtime.embedded import Engine
from evals.results import RESULTS, write_section
from evals.retrieval.bm25 import BM25
from evals.retrieval.corpus import FAMILIES, Family, Variant, answer, credentials, playbook
from evals.retrieval.raised import RAISED_FAMILIES
from learning.embedder import shared_embedder
from learning.indexer import Indexer
from learning.search import Searcher
from learning.vector_store import IndexLocation, VectorStore
from noetl_agent.demo.service import serve_json

MARK_START = "<!-- retrieval:start -->"
MARK_END = "<!-- retrieval:end -->"
K = 5
TASKS = {
    "describe": "describe the failure in words",
    "similar": "similar past failures",
    "where": "find a failure by its playbook's description",
}


@dataclass
class Scores:
    """Running means of the metrics of one method on one task."""

    hits: list[float] = field(default_factory=list)
    recalls: list[float] = field(default_factory=list)
    reciprocal: list[float] = field(default_factory=list)

    def add(self, ranked: Sequence[str], relevant: set[str]) -> None:
        top = list(ranked)[:K]
        self.hits.append(1.0 if top and top[0] in relevant else 0.0)
        self.recalls.append(len(relevant & set(top)) / len(relevant))
        first = next((i for i, item in enumerate(top, 1) if item in relevant), None)
        self.reciprocal.append(1.0 / first if first else 0.0)

    def summary(self) -> dict[str, float]:
        def mean(values: list[float]) -> float:
            return round(sum(values) / len(values), 3) if values else 0.0

        return {
            "queries": len(self.hits),
            "hit@1": mean(self.hits),
            f"recall@{K}": mean(self.recalls),
            f"mrr@{K}": mean(self.reciprocal),
        }


@dataclass
class Report:
    executions: int
    families: int
    variants: int  # per family
    seconds: float
    tasks: dict[str, dict[str, dict[str, float]]]  # task → method → metrics
    misses: list[str] = field(default_factory=list)  # semantic recall@K misses, for reading

    def to_dict(self) -> dict[str, object]:
        return {
            "executions": self.executions,
            "families": self.families,
            "variants": self.variants,
            "seconds": self.seconds,
            "tasks": self.tasks,
            "misses": self.misses,
        }


def corpus_engine(db: SqliteDatabase, root: Path) -> Engine:
    """An embedded engine on ``db`` holding the corpus's keychain."""
    keychain = MemoryCredentialProvider(credentials())
    return Engine(db.events, db.catalog, credentials=keychain, lock_dir=root / "locks")


async def run_variants(
    engine: Engine, families: Sequence[Family]
) -> list[tuple[str, Family, Variant]]:
    """Register and run every variant of ``families`` on ``engine`` (from
    :func:`corpus_engine`), one after the other, with the test server up; return
    (execution id, family, variant) of each. ``RuntimeError`` when one does not fail, or
    fails for another cause than its family's (``Family.expect``)."""
    runs: list[tuple[str, Family, Variant]] = []
    with serve_json(answer, name="retrieval-test-server") as server:
        for family in families:
            for variant in family.variants:
                entry = await engine.register(playbook(variant, server))
                execution_id = await engine.execute(entry.path)
                outcome = await engine.wait(execution_id, timeout=60)
                if outcome.status != "failed":
                    raise RuntimeError(f"{variant.path} was expected to fail: {outcome}")
                error = outcome.error or {}
                said = f"{error.get('code')} {error.get('message')}"
                if family.expect and not re.search(family.expect, said, re.I):
                    raise RuntimeError(
                        f"{variant.path} failed for another cause than {family.name}: {said} "
                        "(for the postgres steps, is NOETL_EVAL_PG_DSN reachable?)"
                    )
                runs.append((execution_id, family, variant))
    return runs


async def build(
    root: Path, families: Sequence[Family] = FAMILIES
) -> tuple[dict[str, str], VectorStore]:
    """Run every variant for real and index the log; return execution id → family."""
    db = SqliteDatabase.open(root / "noetl.db")
    engine = corpus_engine(db, root)
    try:
        runs = await run_variants(engine, families)
        labels = {execution_id: family.name for execution_id, family, _ in runs}
        store = VectorStore.open(IndexLocation.local(root / "qdrant"))
        indexer = Indexer(engine.events, engine.catalog, store, embedder=shared_embedder())
        await indexer.run_once()
    finally:
        await engine.aclose()
        db.close()
    return labels, store


def evaluate(
    labels: dict[str, str], store: VectorStore, families: Sequence[Family] = FAMILIES
) -> Report:
    """Every task, both methods, over the indexed corpus of ``families``."""
    searcher = Searcher(store, shared_embedder())
    failures = [p for p in store.scan("failures") if p.payload.get("final")]
    ids = [str(p.payload["execution_id"]) for p in failures]
    paths = {str(p.payload["execution_id"]): str(p.payload["playbook_path"]) for p in failures}
    texts = [str(p.payload["text"]) for p in failures]
    messages = [str(p.payload["message"]) for p in failures]
    bm25 = BM25(texts)  # describe: whole texts, as the semantic search
    bm25_messages = BM25(messages)  # similar: messages, as similar_failures
    members: dict[str, set[str]] = {}
    for execution_id, name in labels.items():
        members.setdefault(name, set()).add(execution_id)
    tasks: dict[str, dict[str, Scores]] = {
        task: {"semantic": Scores(), "bm25": Scores()} for task in TASKS
    }
    descriptions = {
        variant.path: variant.description for family in families for variant in family.variants
    }
    misses: list[str] = []
    for family in families:
        relevant = members[family.name]
        for query in family.queries:
            found = searcher.search_history(query, "failures", k=K)
            semantic = [hit.execution_id or "" for hit in found]
            tasks["describe"]["semantic"].add(semantic, relevant)
            tasks["describe"]["bm25"].add([ids[i] for i in bm25.rank(query)], relevant)
            if not relevant <= set(semantic):
                misses.append(
                    f"describe {query!r} ({family.name}): {_found(semantic, relevant, labels)}"
                )
    for index, execution_id in enumerate(ids):
        relevant = members[labels[execution_id]] - {execution_id}
        semantic = [
            h.execution_id or "" for h in searcher.similar_failures(execution_id=execution_id, k=K)
        ]
        tasks["similar"]["semantic"].add(semantic, relevant)
        keyword = [ids[i] for i in bm25_messages.rank(messages[index]) if i != index]
        tasks["similar"]["bm25"].add(keyword, relevant)
        if not relevant <= set(semantic):
            misses.append(
                f"similar to {paths[execution_id]} {messages[index]!r} "
                f"({labels[execution_id]}): {_found(semantic, relevant, labels)}"
            )
    for execution_id in ids:
        query = descriptions[paths[execution_id]]
        found = searcher.search_history(query, "failures", k=K)
        semantic = [hit.execution_id or "" for hit in found]
        tasks["where"]["semantic"].add(semantic, {execution_id})
        tasks["where"]["bm25"].add([ids[i] for i in bm25.rank(query)], {execution_id})
        if execution_id not in semantic:
            misses.append(f"where {query!r} ({paths[execution_id]}): not in the first {K}")
    summary = {
        task: {method: scores.summary() for method, scores in methods.items()}
        for task, methods in tasks.items()
    }
    variants = max((len(family.variants) for family in families), default=0)
    return Report(len(labels), len(families), variants, 0.0, summary, misses)


def _found(ranked: Sequence[str], relevant: set[str], labels: dict[str, str]) -> str:
    """How many of ``relevant`` the first K hits hold, and the family of each hit."""
    top = list(ranked)[:K]
    families = ", ".join(labels.get(item, "?") for item in top)
    return f"{len(relevant & set(top))} of {len(relevant)} in the first {K} [{families}]"


CORPORA = {
    "real": (
        "the corpus (`evals/retrieval/corpus.py`): failures produced for real through the "
        "`http`, `postgres`, `duckdb` and `python` tools and urllib, httpx, requests, "
        "SQLite, pydantic and jsonschema: HTTP 503 and 429 and rejected credentials from a "
        "local test server, timeouts, refused connections, KeyError, ZeroDivisionError, "
        "SQL syntax errors, missing tables, validation errors"
    ),
    "raised": (
        "the second corpus (`evals/retrieval/raised.py`): causes that sit closer together "
        "(timeouts and rate limits, missing and unwritable files, DNS failures and refused "
        "connections, full disks and memory), most raised as other ecosystems word them "
        "(JDBC, boto, pydantic, TensorFlow, Java)"
    ),
}


def markdown(reports: Mapping[str, Report]) -> str:
    """The reports (by corpus name, :data:`CORPORA`) as the Markdown section written
    into RESULTS.md: a table per corpus, then the semantic misses."""
    methods = {"semantic": "semantic (all-MiniLM-L6-v2, Qdrant)", "bm25": "keyword (BM25)"}
    lines = [MARK_START, "## Retrieval (execution-history search)", ""]
    lines += [
        "`python -m evals.retrieval.run`: real executions, each failing for a known cause "
        "in a separate playbook (its own path, step and error wording); indexed by the "
        "production indexer. The goal (recall@5 ≥ 0.95, above keywords) is on *similar "
        "past failures* over the first corpus: each failure in turn is the new occurrence, "
        "and the others of its cause are to be found.",
    ]
    for name, report in reports.items():
        lines += [
            "",
            f"**{name}**: {CORPORA[name]}; {report.executions} executions, {report.families} "
            f"causes, {report.variants} variants each; {report.seconds:.0f} s.",
            "",
            f"| task | method | queries | hit@1 | recall@{K} | MRR@{K} |",
            "|---|---|---|---|---|---|",
        ]
        for task, by_method in report.tasks.items():
            for method, metrics in by_method.items():
                lines.append(
                    f"| {TASKS[task]} | {methods[method]} | {metrics['queries']:.0f} | "
                    f"{metrics['hit@1']:.2f} | {metrics[f'recall@{K}']:.2f} | "
                    f"{metrics[f'mrr@{K}']:.2f} |"
                )
    for name, report in reports.items():
        if report.misses:
            lines += [
                "",
                f"Semantic queries of **{name}** whose first {K} hits miss a relevant "
                "failure (the cause of each hit, best first):",
                "",
            ]
            lines += [f"- {miss}" for miss in report.misses]
    lines += ["", MARK_END]
    return "\n".join(lines)


def write_results(path: Path, section: str) -> None:
    """Replace the retrieval section of ``path`` (creating the file if needed)."""
    write_section(path, section, MARK_START, MARK_END)


def run(families: Sequence[Family] = FAMILIES) -> Report:
    """Build the corpus of ``families`` in a temporary folder and evaluate it."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="noetl-retrieval-") as folder:
        labels, store = asyncio.run(build(Path(folder), families))
        report = evaluate(labels, store, families)
    report.seconds = round(time.monotonic() - started, 1)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evals.retrieval.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown results file")
    parser.add_argument("--no-write", action="store_true", help="do not update the results")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    parser.add_argument(
        "--corpus",
        choices=[*CORPORA, "both"],
        default="both",
        help="which corpus to measure (default both); only both are written",
    )
    args = parser.parse_args(argv)
    chosen = list(CORPORA) if args.corpus == "both" else [args.corpus]
    corpora = {"real": FAMILIES, "raised": RAISED_FAMILIES}
    reports = {name: run(corpora[name]) for name in chosen}
    section = markdown(reports)
    if args.json:
        data = {name: report.to_dict() for name, report in reports.items()}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        sys.stdout.write(section + "\n")
    if not args.no_write and args.corpus == "both":
        write_results(args.results, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
