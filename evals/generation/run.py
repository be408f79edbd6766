"""Generation eval: do descriptions become playbooks that validate, dry-run, have the
structure asked for, and, run for real against local fixtures, give the expected output?

    .venv/bin/python -m evals.generation.run [--results evals/RESULTS.md] [--json]

For every task of :mod:`evals.generation.corpus` (``{api}`` replaced by the URL of the
local service of :mod:`evals.generation.service`) the offline planner writes a draft,
and so does the configured model when ``NOETL_LLM_MODEL`` is set. Each draft is checked:

- **valid**: it parses and passes the static checks;
- **dry run**: its execution with every side effect replaced completes;
- **structure**: it uses the task's tool kinds and has its loop, fan-out (an inclusive
  arc set), branch (an arc with ``when``) and retry policy;
- **live** (tasks with an ``expect``): registered on a fresh embedded engine and run
  against the local service (python and duckdb for real), it completes and its result
  passes the task's check.

A task passes when every check that applies holds. Pass rates are reported per half
(simple, hard) and overall; the goal offline is 70 % on the simple half. The Markdown
table goes into ``evals/RESULTS.md`` between ``<!-- generation:start -->`` and
``<!-- generation:end -->``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.adapters.sqlite.stores import SqliteDatabase
from engine.runtime.embedded import Engine
from evals.generation.corpus import TASKS, Task
from evals.generation.service import LocalService, local_service
from evals.results import RESULTS, write_section
from noetl_agent.generation import Constraints, Draft, Generator
from noetl_agent.llm import LlmClient, LlmSettings

MARK_START = "<!-- generation:start -->"
MARK_END = "<!-- generation:end -->"
LIVE_TIMEOUT = 60.0
GOAL_SIMPLE_OFFLINE = 0.7


@dataclass
class Outcome:
    """The checks of one task for one generator."""

    task: str
    simple: bool
    valid: bool
    dry_run: bool
    structure: bool
    live: bool | None  # None: not run live
    seconds: float
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.valid and self.dry_run and self.structure and self.live is not False

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "simple": self.simple,
            "passed": self.passed,
            "valid": self.valid,
            "dry_run": self.dry_run,
            "structure": self.structure,
            "live": self.live,
            "seconds": round(self.seconds, 2),
            "problems": self.problems,
        }


def structure_problems(document: dict[str, Any], task: Task) -> list[str]:
    """What the playbook lacks of the task's tool kinds and structure (empty: all there)."""
    steps = document.get("workflow") or []
    tools = [t for s in steps for t in (s["tool"] if isinstance(s["tool"], list) else [s["tool"]])]
    kinds = {tool.get("kind") for tool in tools}
    problems = [f"no {kind} step" for kind in sorted(task.kinds - kinds)]
    nexts = [s.get("next") or {} for s in steps]
    found = {
        "loop": any("loop" in s for s in steps),
        "fan_out": any((n.get("spec") or {}).get("mode") == "inclusive" for n in nexts),
        "branch": any("when" in arc for n in nexts for arc in n.get("arcs") or []),
        "retry": any(((t.get("spec") or {}).get("policy") or {}).get("rules") for t in tools),
    }
    problems += [f"no {name}" for name in sorted(task.structure) if not found[name]]
    return problems


async def live_run(content: str, home: Path) -> tuple[str, Any]:
    """Register and run ``content`` on a fresh embedded engine; (status, result or error)."""
    db = SqliteDatabase.open(home / "noetl.db")
    engine = Engine(db.events, db.catalog, lock_dir=home / "locks")
    try:
        entry = await engine.register(content, source=str(home / "playbook.yaml"))
        execution_id = await engine.execute(entry.path)
        outcome = await engine.wait(execution_id, LIVE_TIMEOUT)
        if outcome.status == "completed":
            return outcome.status, outcome.result
        return outcome.status, outcome.error
    finally:
        await engine.aclose()
        db.close()


async def evaluate(task: Task, generator: Generator, service: LocalService) -> Outcome:
    """Generate a draft for ``task`` and check it (see the module docstring)."""
    started = time.perf_counter()
    description = task.text.replace("{api}", service.url)
    draft: Draft = await generator.generate(description, Constraints(examples=0))
    problems = [str(issue) for issue in draft.issues]
    dry = draft.dry_run is not None and draft.dry_run.passed
    if draft.valid and not dry and draft.dry_run is not None:
        problems.append(f"dry run {draft.dry_run.status}: {draft.dry_run.error}")
    structure: list[str] = []
    if draft.valid:
        structure = structure_problems(yaml.safe_load(draft.yaml), task)
        problems += structure
    live: bool | None = None
    if task.expect is not None and draft.valid and dry:
        with tempfile.TemporaryDirectory(prefix="noetl-generation-eval-") as home:
            status, result = await live_run(draft.yaml, Path(home))
        try:
            live = status == "completed" and bool(task.expect(result))
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            live = False
            problems.append(f"unexpected result shape ({type(exc).__name__}: {exc})")
        if not live:
            problems.append(f"live run {status}: {json.dumps(result, default=str)[:300]}")
    return Outcome(
        task.text,
        task.simple,
        draft.valid,
        dry,
        draft.valid and not structure,
        live,
        time.perf_counter() - started,
        problems,
    )


def rates(outcomes: list[Outcome]) -> dict[str, Any]:
    """Pass rates: overall, per half, and per check."""

    def share(items: list[Outcome], check: str) -> float:
        if not items:
            return 0.0
        return round(sum(1 for o in items if getattr(o, check)) / len(items), 3)

    simple = [o for o in outcomes if o.simple]
    hard = [o for o in outcomes if not o.simple]
    live = [o for o in outcomes if o.live is not None]
    return {
        "tasks": len(outcomes),
        "passed": share(outcomes, "passed"),
        "simple_passed": share(simple, "passed"),
        "hard_passed": share(hard, "passed"),
        "valid": share(outcomes, "valid"),
        "dry_run": share(outcomes, "dry_run"),
        "structure": share(outcomes, "structure"),
        "live_runs": len(live),
        "live_passed": share(live, "live"),
    }


async def run(model: bool) -> dict[str, Any]:
    """Every task through the offline planner (and the configured model when ``model``)."""
    generators = {"offline": Generator()}
    settings = LlmSettings.from_environment()
    if model and settings.configured:
        generators[f"model {settings.model}"] = Generator(llm=LlmClient(settings))
    report: dict[str, Any] = {}
    for name, generator in generators.items():
        outcomes = []
        with local_service() as service:
            for task in TASKS:
                outcomes.append(await evaluate(task, generator, service))
        report[name] = {"rates": rates(outcomes), "tasks": [o.to_dict() for o in outcomes]}
    return report


def markdown(report: dict[str, Any]) -> str:
    """The results section: one row per generator."""
    lines = [
        MARK_START,
        "## Generation eval",
        "",
        "`python -m evals.generation.run`: "
        f"{len(TASKS)} descriptions, simple half first; a task passes when its draft is "
        "valid, its dry run completes, it has the required tool kinds and structure and, "
        "for the tasks run live against the local service, the result is the expected one. "
        f"Goal offline: {GOAL_SIMPLE_OFFLINE:.0%} on the simple half. These descriptions "
        "served as the offline planner's development set; its held-out phrasings are "
        "checked by `tests/generation/test_planner.py`.",
        "",
        "| generator | passed | simple half | hard half | valid | dry run | structure "
        "| live (runs) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in report.items():
        r = entry["rates"]
        lines.append(
            f"| {name} | {r['passed']:.0%} | {r['simple_passed']:.0%} | {r['hard_passed']:.0%} "
            f"| {r['valid']:.0%} | {r['dry_run']:.0%} | {r['structure']:.0%} "
            f"| {r['live_passed']:.0%} ({r['live_runs']}) |"
        )
    failed = [t for t in report.get("offline", {}).get("tasks", []) if not t["passed"]]
    if failed:
        lines += ["", "Offline failures:", ""]
        lines += [f"- {t['task'][:90]}: {'; '.join(t['problems'])[:200]}" for t in failed]
    lines.append(MARK_END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown file to update.")
    parser.add_argument("--json", action="store_true", help="Print the whole report as JSON.")
    parser.add_argument("--offline-only", action="store_true", help="Skip the model.")
    args = parser.parse_args(argv)
    report = asyncio.run(run(model=not args.offline_only))
    write_section(args.results, markdown(report), MARK_START, MARK_END)
    if args.json:
        sys.stdout.write(json.dumps(report, default=str) + "\n")
    else:
        for name, entry in report.items():
            sys.stdout.write(f"{name}: {json.dumps(entry['rates'])}\n")
    offline = report["offline"]["rates"]["simple_passed"]
    return 0 if offline >= GOAL_SIMPLE_OFFLINE else 1


if __name__ == "__main__":
    raise SystemExit(main())
