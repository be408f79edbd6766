"""Retrieval eval: does semantic search find the failures a person describes, and the
past failures like a given one, better than keyword search?

    .venv/bin/python -m evals.retrieval.run [--results evals/RESULTS.md] [--json]

Builds the labelled corpus of :mod:`evals.retrieval.corpus` by really running every
variant playbook on an embedded engine (a temporary SQLite file), indexes the executions
with the production indexer (real model, real local Qdrant), and then measures two tasks
for the semantic search and for an Okapi BM25 baseline over the very same document texts:

- **describe**: each family's queries ("cannot reach the database"); relevant are the
  family's failures;
- **similar**: each failure in turn (leave one out); relevant are the other failures of
  its family. Semantic: ``similar_failures(execution_id)``, which compares error
  messages; BM25: the failure's message as the query over the other messages.

Metrics, averaged over queries: hit@1 (the first hit is relevant), recall@5 (share of the
relevant found in the first five) and MRR@5 (1 / rank of the first relevant hit, 0 when
none is in the first five). The Markdown table goes into ``evals/RESULTS.md`` between
``<!-- retrieval:start -->`` and ``<!-- retrieval:end -->``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.adapters.sqlite.stores import SqliteDatabase
from engine.runtime.embedded import Engine
from evals.results import RESULTS, write_section
from evals.retrieval.bm25 import BM25
from evals.retrieval.corpus import FAMILIES, playbook
from learning.embedder import shared_embedder
from learning.indexer import Indexer
from learning.search import Searcher
from learning.vector_store import IndexLocation, VectorStore

MARK_START = "<!-- retrieval:start -->"
MARK_END = "<!-- retrieval:end -->"
K = 5


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
    seconds: float
    tasks: dict[str, dict[str, dict[str, float]]]  # task → method → metrics
    misses: list[str] = field(default_factory=list)  # semantic recall@K misses, for reading

    def to_dict(self) -> dict[str, object]:
        return {
            "executions": self.executions,
            "families": self.families,
            "seconds": self.seconds,
            "tasks": self.tasks,
            "misses": self.misses,
        }


async def build(root: Path) -> tuple[dict[str, str], VectorStore]:
    """Run every variant for real and index the log; return execution id → family."""
    db = SqliteDatabase.open(root / "noetl.db")
    engine = Engine(db.events, db.catalog, lock_dir=root / "locks")
    labels: dict[str, str] = {}
    try:
        for family in FAMILIES:
            for variant in family.variants:
                entry = await engine.register(playbook(variant))
                execution_id = await engine.execute(entry.path)
                outcome = await engine.wait(execution_id, timeout=60)
                if outcome.status != "failed":
                    raise RuntimeError(f"{variant.path} was expected to fail: {outcome}")
                labels[execution_id] = family.name
        store = VectorStore.open(IndexLocation.local(root / "qdrant"))
        indexer = Indexer(engine.events, engine.catalog, store, embedder=shared_embedder())
        await indexer.run_once()
    finally:
        await engine.aclose()
        db.close()
    return labels, store


def evaluate(labels: dict[str, str], store: VectorStore) -> Report:
    """Both tasks, both methods, over the indexed corpus."""
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
        "describe": {"semantic": Scores(), "bm25": Scores()},
        "similar": {"semantic": Scores(), "bm25": Scores()},
    }
    misses: list[str] = []
    for family in FAMILIES:
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
    summary = {
        task: {method: scores.summary() for method, scores in methods.items()}
        for task, methods in tasks.items()
    }
    return Report(len(labels), len(FAMILIES), 0.0, summary, misses)


def _found(ranked: Sequence[str], relevant: set[str], labels: dict[str, str]) -> str:
    """How many of ``relevant`` the first K hits hold, and the family of each hit."""
    top = list(ranked)[:K]
    families = ", ".join(labels.get(item, "?") for item in top)
    return f"{len(relevant & set(top))} of {len(relevant)} in the first {K} [{families}]"


def markdown(report: Report) -> str:
    """The report as the Markdown section written into RESULTS.md."""
    names = {"describe": "describe the failure in words", "similar": "similar past failures"}
    methods = {"semantic": "semantic (all-MiniLM-L6-v2, Qdrant)", "bm25": "keyword (BM25)"}
    lines = [
        MARK_START,
        "## Retrieval (execution-history search)",
        "",
        f"`python -m evals.retrieval.run`: {report.executions} real executions failing in "
        f"{report.families} distinct ways, 3 differently worded variants each (separate "
        "playbooks, steps and error types); indexed by the production indexer; "
        f"{report.seconds:.0f} s.",
        "",
        f"| task | method | queries | hit@1 | recall@{K} | MRR@{K} |",
        "|---|---|---|---|---|---|",
    ]
    for task, by_method in report.tasks.items():
        for method, metrics in by_method.items():
            lines.append(
                f"| {names[task]} | {methods[method]} | {metrics['queries']:.0f} | "
                f"{metrics['hit@1']:.2f} | {metrics[f'recall@{K}']:.2f} | "
                f"{metrics[f'mrr@{K}']:.2f} |"
            )
    if report.misses:
        lines += [
            "",
            f"Semantic queries whose first {K} hits miss a relevant failure (the family of "
            "each hit, best first):",
            "",
        ]
        lines += [f"- {miss}" for miss in report.misses]
    lines += ["", MARK_END]
    return "\n".join(lines)


def write_results(path: Path, section: str) -> None:
    """Replace the retrieval section of ``path`` (creating the file if needed)."""
    write_section(path, section, MARK_START, MARK_END)


def run() -> Report:
    """Build the corpus in a temporary folder and evaluate it."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="noetl-retrieval-") as folder:
        labels, store = asyncio.run(build(Path(folder)))
        report = evaluate(labels, store)
    report.seconds = round(time.monotonic() - started, 1)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evals.retrieval.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown results file")
    parser.add_argument("--no-write", action="store_true", help="do not update the results")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = run()
    section = markdown(report)
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(section + "\n")
    if not args.no_write:
        write_results(args.results, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
