"""Explanation eval: over the retrieval eval's labelled failures, does the first cause of
each failure's explanation match the cause it really has?

    .venv/bin/python -m evals.explain.run [--results evals/RESULTS.md] [--json]

Runs every variant playbook of :mod:`evals.retrieval.raised` (the retrieval eval's second
corpus) for real on an embedded engine (a temporary SQLite file) as the retrieval eval does
(:func:`evals.retrieval.run.run_variants`), indexes the log with the production indexer
(real model, real local Qdrant) and explains each failure with :class:`Explainer`,
offline, in four settings:

- **rules only**: no search index, the rule-based hints by error class alone;
- **rules + similar failures**: the index finds the other failures most like this one
  (leave one out: its own is never among them); no feedback recorded;
- **+ feedback**: a person has confirmed, on every other failure, the cause it really had
  (``feedback.recorded``, helpful, with that cause);
- **feedback alone**: the same, with the rules switched off (neither the failure's own
  error nor its neighbours are classified by them): how far the recorded history alone
  carries a failure whose wording no rule knows. The rules were written knowing the
  kinds of errors this corpus holds, so the first rows are an optimistic reading of
  them; this row is not.

Each family is one true cause (a database refusing connections is ``service_down``, a
missing file ``missing_file``, ...). Metrics: top-1 (the first cause is the true one)
and top-3 rates. The Markdown table goes into ``evals/RESULTS.md`` between
``<!-- explain:start -->`` and ``<!-- explain:end -->``.
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
from evals.retrieval.corpus import Family
from evals.retrieval.raised import RAISED_FAMILIES
from evals.retrieval.run import run_variants
from learning.vector_store import IndexLocation
from noetl_agent.explain import Explainer
from noetl_agent.explain_causes import rank
from noetl_agent.history import History
from noetl_agent.principals import Principal

MARK_START = "<!-- explain:start -->"
MARK_END = "<!-- explain:end -->"
TRUE_CAUSE = {
    "database_refused": "service_down",
    "missing_file": "missing_file",
    "missing_field": "input_shape",
    "bad_number": "bad_value",
    "division_by_zero": "division_by_zero",
    "permission_denied": "permission",
    "auth_rejected": "credentials",
    "rate_limited": "transient",
    "timed_out": "timeout",
    "disk_full": "disk_full",
    "out_of_memory": "out_of_memory",
    "dns_failure": "dns",
}
SETTINGS = {
    "rules": "rules only",
    "similar": "rules + similar failures",
    "feedback": "+ feedback on past failures",
    "history": "feedback alone (rules off)",
}
REVIEWER = Principal("eval-reviewer", "human", frozenset({"operator"}))


@dataclass
class Rates:
    """Top-1 and top-3 matches of one setting."""

    top1: list[bool] = field(default_factory=list)
    top3: list[bool] = field(default_factory=list)

    def add(self, ranked: Sequence[str], truth: str) -> None:
        self.top1.append(bool(ranked) and ranked[0] == truth)
        self.top3.append(truth in ranked[:3])

    def summary(self) -> dict[str, float]:
        count = len(self.top1)
        return {
            "failures": count,
            "top1": round(sum(self.top1) / count, 3) if count else 0.0,
            "top3": round(sum(self.top3) / count, 3) if count else 0.0,
        }


@dataclass
class Report:
    executions: int
    families: int
    variants: int  # per family
    seconds: float
    settings: dict[str, dict[str, float]]
    misses: list[str] = field(default_factory=list)  # top-1 misses with similar failures

    def to_dict(self) -> dict[str, object]:
        return {
            "executions": self.executions,
            "families": self.families,
            "variants": self.variants,
            "seconds": self.seconds,
            "settings": self.settings,
            "misses": self.misses,
        }


async def _ranked(explainer: Explainer, execution_id: str) -> list[str]:
    explanation = await explainer.explain(execution_id, use_model=False)
    return [cause.id for cause in explanation.causes]


async def _history_only(explainer: Explainer, execution_id: str) -> list[str]:
    explanation = await explainer.explain(execution_id, use_model=False)
    assert explanation.failure is not None
    past = [item.past() for item in explanation.similar]
    return [cause.id for cause in rank(explanation.failure.error, past, use_rules=False)]


async def evaluate(root: Path, families: Sequence[Family] = RAISED_FAMILIES) -> Report:
    """Run the corpus under ``root`` and explain every failure in the three settings."""
    db = SqliteDatabase.open(root / "noetl.db")
    engine = Engine(db.events, db.catalog, lock_dir=root / "locks")
    try:
        runs = await run_variants(engine, families)
        labels = {execution_id: family.name for execution_id, family, _ in runs}
        paths = {execution_id: variant.path for execution_id, _, variant in runs}
        history = History(db.events, db.catalog, IndexLocation.local(root / "qdrant"))
        await history.index()
        rules = Explainer(db.events, db.catalog)
        similar = Explainer(db.events, db.catalog, history=history)
        rates = {name: Rates() for name in SETTINGS}
        misses: list[str] = []
        for execution_id, name in labels.items():
            truth = TRUE_CAUSE[name]
            rates["rules"].add(await _ranked(rules, execution_id), truth)
            ranked = await _ranked(similar, execution_id)
            rates["similar"].add(ranked, truth)
            if not ranked or ranked[0] != truth:
                got = ranked[0] if ranked else "nothing"
                misses.append(f"{paths[execution_id]} ({truth}): first cause {got}")
        for execution_id, name in labels.items():
            await similar.record_feedback(
                execution_id, helpful=True, principal=REVIEWER, cause=TRUE_CAUSE[name]
            )
        for execution_id, name in labels.items():
            truth = TRUE_CAUSE[name]
            ranked = await _ranked(similar, execution_id)
            rates["feedback"].add(ranked, truth)
            rates["history"].add(await _history_only(similar, execution_id), truth)
            if not ranked or ranked[0] != truth:
                got = ranked[0] if ranked else "nothing"
                misses.append(f"{paths[execution_id]} ({truth}): first cause {got}, with feedback")
    finally:
        await engine.aclose()
        db.close()
    summary = {name: rate.summary() for name, rate in rates.items()}
    variants = max((len(family.variants) for family in families), default=0)
    return Report(len(labels), len(families), variants, 0.0, summary, misses)


def markdown(report: Report) -> str:
    """The report as the Markdown section written into RESULTS.md."""
    lines = [
        MARK_START,
        "## Explanation quality (failure explanation, offline)",
        "",
        "`python -m evals.explain.run`: the retrieval eval's second corpus, "
        f"{report.executions} real failures ({report.families} true causes, "
        f"{report.variants} differently worded variants each), "
        "each explained by `noetl-agent explain` without a model; does its first cause "
        f"match the true cause? {report.seconds:.0f} s.",
        "",
        "| setting | failures | top-1 | top-3 |",
        "|---|---|---|---|",
    ]
    for name, metrics in report.settings.items():
        lines.append(
            f"| {SETTINGS[name]} | {metrics['failures']:.0f} | {metrics['top1']:.2f} | "
            f"{metrics['top3']:.2f} |"
        )
    lines += [
        "",
        "rules only: the hints by error class; rules + similar failures: the past failures "
        "the index finds (leave one out); + feedback: a person confirmed the true cause on "
        "every other failure; feedback alone: the same with the rules switched off (the "
        "rules were written knowing the kinds of errors in this corpus, so the rows using "
        "them read optimistically).",
    ]
    if report.misses:
        lines += ["", "First causes that missed (with similar failures):", ""]
        lines += [f"- {miss}" for miss in report.misses]
    lines += ["", MARK_END]
    return "\n".join(lines)


def run(families: Sequence[Family] = RAISED_FAMILIES) -> Report:
    """Build the corpus in a temporary folder and evaluate it."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="noetl-explain-") as folder:
        report = asyncio.run(evaluate(Path(folder), families))
    report.seconds = round(time.monotonic() - started, 1)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evals.explain.run", description=__doc__.split("\n\n")[0]
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
        write_section(args.results, section, MARK_START, MARK_END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
