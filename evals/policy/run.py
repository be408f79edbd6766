"""Policy eval: the closed loop end to end, against a simulator whose truth is known.

    .venv/bin/python -m evals.policy.run [--runs N] [--quick] [--results FILE] [--no-write] [--json]

On a fresh ``NOETL_HOME`` (a temporary folder) with the embedded stack and one in-process
worker per pool (the demo's stack, :mod:`noetl_agent.demo.stack`), against the simulator of
:mod:`evals.policy.simulator`:

1. register the scenarios' playbooks (:mod:`evals.policy.scenarios`) and run each ``N``
   times (the pool scenario also has ``N`` runs of its earlier version on the other pool);
2. ask the proposals service for suggestions as an operator, and judge every proposal
   against the simulator's ground truth (:mod:`evals.policy.judge`): harmful = retrying a
   permanent error or a step that is not idempotent;
3. approve, as the human approver ``eval-reviewer``, one proposal per playbook (the first
   by kind: retry_remove, retry, pool, timeout, max_in_flight), run ``N`` more on the new
   version and let the service measure the effect (``policy.evaluated``);
4. rollback scenario: an operator's hand-written change (a step timeout below the
   service time) is approved, runs ``N`` times, must be judged worse and raise a rollback
   proposal; the rollback is approved and the playbook recovers;
5. brute-force sweep (:mod:`evals.policy.sweep`) in a separate store: every candidate
   policy, v1 and the approved version on the same reseeded failure sequence. The
   achievable reduction is v1 minus the best candidate; the approved version should get
   at least 90% of it (failure rate, or wall time / cost where failures cannot change).

Goals: no harmful proposal from the learners and no harmful rollback proposal from the
effect evaluation, >= 90% of the achievable reduction in every scenario, a rollback raised
in the rollback scenario; wrong (not harmful) proposals are reported alongside. The
Markdown section goes into ``evals/RESULTS.md`` between ``<!-- policy:start -->`` and
``<!-- policy:end -->``; the exit status is 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.errors import NoetlError
from engine.runtime.embedded import Engine
from evals.policy.judge import Judgement, judge
from evals.policy.measure import summary
from evals.policy.scenarios import ROLLBACK, ROLLBACK_TIMEOUT, Scenario, World, world
from evals.policy.simulator import Simulator, serve, truth
from evals.policy.sweep import (
    SweepResult,
    candidate_from_version,
    measure_candidate,
    pool_candidates,
    retry_candidates,
    same_policy,
    sweep,
    timeout_candidates,
)
from evals.results import RESULTS, write_section
from learning.policy.patch import pointer
from noetl_agent.demo.runs import Batch, run_batch
from noetl_agent.demo.stack import demo_stack
from noetl_agent.principals import Principal

MARK_START = "<!-- policy:start -->"
MARK_END = "<!-- policy:end -->"
OPERATOR = Principal("eval-operator", "human", frozenset({"operator"}))
REVIEWER = Principal("eval-reviewer", "human", frozenset({"approver"}))
PRIORITY = ("retry_remove", "retry", "pool", "timeout", "max_in_flight")
GOAL_SHARE = 0.9
ATTEMPTS = (1, 2, 3, 4, 5, 6)
DELAYS = (0.0, 0.05)
QUICK_ATTEMPTS = (1, 2, 3, 4, 6)
QUICK_DELAYS = (0.0,)
TIMEOUTS = ("150ms", "200ms", "300ms", "500ms", "1s", None)
METRIC = {"failures": "failure_rate", "wall": "wall_s", "cost": "cost_per_run"}


@dataclass
class ScenarioResult:
    """One scenario through the loop and the sweep."""

    name: str
    goal: str
    notes: str
    before: Batch
    after: Batch | None = None
    before_version: int | None = None
    after_version: int | None = None
    proposals: list[dict[str, Any]] = field(default_factory=list)
    approved: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    sweep: SweepResult | None = None
    rollback_id: str | None = None  # a rollback proposal its evaluation raised
    problems: list[str] = field(default_factory=list)

    def _approved_batch(self) -> Batch | None:
        """The approved version on the sweep's sequence; v1 when nothing was approved."""
        if self.sweep is None:
            return None
        return self.sweep.batches.get("approved") or self.sweep.batches.get("v1")

    def share(self) -> float | None:
        """Share of the achievable reduction of the goal's metric the approved version
        got, on the sweep's common failure sequence (None when nothing was achievable)."""
        approved = self._approved_batch()
        if self.sweep is None or approved is None:
            return None
        metric = METRIC[self.goal]
        v1 = summary(self.sweep.batches["v1"])[metric]
        best = summary(self.sweep.batches[self.sweep.best])[metric]
        got = summary(approved)[metric]
        if v1 is None or best is None or got is None or v1 - best <= 0:
            return None
        return (v1 - got) / (v1 - best)

    def regret(self) -> dict[str, float] | None:
        """Approved minus best candidate, per metric, on the common failure sequence."""
        approved = self._approved_batch()
        if self.sweep is None or approved is None:
            return None
        best = summary(self.sweep.batches[self.sweep.best])
        got = summary(approved)
        return {
            metric: float(f"{got[metric] - best[metric]:.4g}")
            for metric in ("failure_rate", "wall_s", "cost_per_run")
            if got[metric] is not None and best[metric] is not None
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "goal": self.goal,
            "notes": self.notes,
            "before": {"version": self.before_version, **summary(self.before)},
            "after": None
            if self.after is None
            else {"version": self.after_version, **summary(self.after)},
            "proposals": self.proposals,
            "approved": self.approved,
            "evaluation": self.evaluation,
            "rollback_raised": self.rollback_id,
            "sweep": self.sweep.to_dict() if self.sweep else None,
            "share_of_achievable": None if self.share() is None else round(self.share() or 0, 3),
            "regret": self.regret(),
            "problems": self.problems,
        }


@dataclass
class RollbackResult:
    """The rollback scenario: a change that made things worse, and its undoing."""

    before: Batch
    submitted: str | None = None
    after: Batch | None = None
    evaluation: dict[str, Any] | None = None
    rollback_id: str | None = None
    rollback_status: str | None = None
    recovered: Batch | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def raised(self) -> bool:
        return self.rollback_id is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "before": summary(self.before),
            "submitted": self.submitted,
            "after": summary(self.after) if self.after else None,
            "verdict": (self.evaluation or {}).get("verdict"),
            "evaluation": self.evaluation,
            "rollback_raised": self.raised,
            "rollback_id": self.rollback_id,
            "rollback_status": self.rollback_status,
            "after_rollback": summary(self.recovered) if self.recovered else None,
            "problems": self.problems,
        }


@dataclass(frozen=True, slots=True)
class GoalResult:
    name: str
    target: str
    measured: str
    passed: bool | None  # None: could not be measured
    informational: bool = False  # reported, not part of the pass/fail verdict

    def to_dict(self) -> dict[str, Any]:
        return {
            "goal": self.name,
            "target": self.target,
            "measured": self.measured,
            "passed": self.passed,
            "informational": self.informational,
        }


@dataclass
class Report:
    runs: int
    quick: bool
    seconds: float = 0.0
    loop: bool = True  # whether the learners and the proposals service were there to run
    scenarios: list[ScenarioResult] = field(default_factory=list)
    rollback: RollbackResult | None = None
    judgements: list[Judgement] = field(default_factory=list)
    simulator: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase
    min_samples: int | None = None  # the learners' minimum sample size in this run

    @property
    def harmful(self) -> int:
        return sum(1 for j in self.judgements if j.harmful)

    @property
    def harmful_learned(self) -> int:
        return sum(1 for j in self.judgements if j.harmful and j.by_learner)

    @property
    def wrong(self) -> int:
        return sum(1 for j in self.judgements if j.wrong)

    def goals(self) -> list[GoalResult]:
        unmeasured = "not measured (the loop did not run)"
        learned = sum(1 for j in self.judgements if j.by_learner)
        rollbacks = len(self.judgements) - learned
        harmful_rollbacks = self.harmful - self.harmful_learned
        results = [
            GoalResult(
                "harmful proposals of the learners",
                "0",
                f"{self.harmful_learned} of {learned}" if self.loop else unmeasured,
                self.harmful_learned == 0 if self.loop else None,
            ),
            GoalResult(
                "harmful rollback proposals of the effect evaluation",
                "0",
                f"{harmful_rollbacks} of {rollbacks}" if self.loop else unmeasured,
                harmful_rollbacks == 0 if self.loop else None,
            ),
            GoalResult(
                "wrong proposals (harmful ones included)",
                "0",
                f"{self.wrong} of {len(self.judgements)}" if self.loop else unmeasured,
                self.wrong == 0 if self.loop else None,
                informational=True,
            ),
        ]
        for scenario in self.scenarios:
            share = scenario.share()
            name = f"{scenario.name}: share of achievable {METRIC[scenario.goal]} reduction"
            if not self.loop:
                results.append(GoalResult(name, f">= {GOAL_SHARE:.0%}", unmeasured, None))
            elif share is None:
                results.append(GoalResult(name, f">= {GOAL_SHARE:.0%}", "nothing achievable", None))
            else:
                results.append(
                    GoalResult(name, f">= {GOAL_SHARE:.0%}", f"{share:.0%}", share >= GOAL_SHARE)
                )
        raised = self.rollback is not None and self.rollback.raised
        results.append(
            GoalResult(
                "rollback raised when a change made things worse",
                "yes",
                ("yes" if raised else "no") if self.loop else unmeasured,
                raised if self.loop else None,
            )
        )
        return results

    @property
    def passed(self) -> bool:
        return all(goal.passed is True for goal in self.goals() if not goal.informational)

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "quick": self.quick,
            "seconds": self.seconds,
            "phases": self.phases,
            "min_samples": self.min_samples,
            "loop": self.loop,
            "passed": self.passed,
            "goals": [goal.to_dict() for goal in self.goals()],
            "harmful": self.harmful,
            "harmful_learned": self.harmful_learned,
            "wrong": self.wrong,
            "judgements": [j.to_dict() for j in self.judgements],
            "scenarios": [s.to_dict() for s in self.scenarios],
            "rollback": self.rollback.to_dict() if self.rollback else None,
            "simulator": self.simulator,
            "problems": self.problems,
        }


def _brief(proposal: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": proposal.get("id"),
        "kind": proposal.get("kind"),
        "step": (proposal.get("target") or {}).get("step"),
        "version": (proposal.get("target") or {}).get("version"),
        "status": proposal.get("status"),
        "proposed_by": (proposal.get("proposed_by") or {}).get("name"),
        "patch": proposal.get("patch"),
        "rationale": proposal.get("rationale"),
    }


def loop_missing() -> list[str]:
    """The modules the loop needs that are not installed in this tree."""
    needed = ("noetl_agent.proposals", "learning.policy.learners", "learning.policy.history")
    return [name for name in needed if importlib.util.find_spec(name) is None]


async def run_loop(engine: Engine, world_: World, base_url: str, runs: int, report: Report) -> None:
    """Steps 1-4 of the module docstring, on ``engine``'s store."""
    from noetl_agent.policy_settings import PolicySettings
    from noetl_agent.proposals import ProposalService

    service = ProposalService(engine, settings=PolicySettings(evaluate_after=runs))
    config = service.learner_config
    if runs // 4 < config.min_samples:  # fewer runs than the standard 40: scale it down
        service.learner_config = replace(config, min_samples=max(3, runs // 4))
    report.min_samples = service.learner_config.min_samples
    scenarios = {s.name: s for s in world_.scenarios}
    results: dict[str, ScenarioResult] = {}
    for scenario in world_.scenarios:
        if scenario.earlier_content() is not None:
            first = await engine.register(scenario.earlier_content() or "")
            await run_batch(engine, scenario, base_url, runs, version=first.version)
        entry = await engine.register(scenario.content)
        batch = await run_batch(engine, scenario, base_url, runs)
        results[scenario.name] = ScenarioResult(
            scenario.name, scenario.goal, scenario.notes, batch, before_version=entry.version
        )
    steady = await engine.register(ROLLBACK.content)
    rollback = RollbackResult(await run_batch(engine, ROLLBACK, base_url, runs))

    suggested = await service.suggest(OPERATOR)
    raised = [*suggested.proposed, *suggested.pending]
    by_path = {s.path: s for s in [*world_.scenarios, ROLLBACK]}
    truths = {name: truth(route) for name, route in world_.routes.items()}
    for proposal in raised:
        target = proposal["target"]
        subject = by_path.get(target["playbook"])
        if subject is None:
            report.problems.append(f"proposal {proposal['id']} targets an unknown playbook")
            continue
        content = (await engine.catalog.get(target["playbook"], target["version"])).content
        report.judgements.append(judge(proposal, subject, world_, truths, content))
        if subject.name in results:
            results[subject.name].proposals.append(_brief(proposal))

    for result in results.values():
        ranked = sorted(
            (p for p in result.proposals if p["kind"] in PRIORITY),
            key=lambda p: PRIORITY.index(p["kind"]),
        )
        if not ranked:
            result.problems.append("no proposal was raised for this playbook")
            continue
        chosen = ranked[0]
        try:
            decided = await service.decide(
                chosen["id"], REVIEWER, True, comment="eval: the first proposal by kind"
            )
        except NoetlError as exc:
            result.problems.append(f"approving {chosen['id']} failed: {exc}")
            continue
        result.approved = _brief(decided)
        result.after_version = decided.get("applied_version")
        if decided.get("status") != "applied":
            result.problems.append(f"{chosen['id']} was approved but is {decided.get('status')}")

    try:
        rollback.submitted = await _break_steady(service, steady.path)
    except NoetlError as exc:
        rollback.problems.append(f"the hand-written change could not be applied: {exc}")
    for name, result in results.items():
        scenario = scenarios[name]
        result.after = await run_batch(engine, scenario, base_url, runs, first_index=runs)
        result.after_version = result.after.records[0].version if result.after.records else None
    rollback.after = await run_batch(engine, ROLLBACK, base_url, runs, first_index=runs)

    evaluated = {item["id"]: item for item in await service.evaluate_due(OPERATOR)}

    async def judge_rollback(item: dict[str, Any] | None, subject: Scenario) -> str | None:
        """Judge the rollback proposal an evaluation raised, like any other proposal."""
        rollback_id = ((item or {}).get("evaluation") or {}).get("rollback_proposal_id")
        if rollback_id is None:
            return None
        proposal = await service.get(str(rollback_id))
        target = proposal["target"]
        content = (await engine.catalog.get(target["playbook"], target["version"])).content
        report.judgements.append(judge(proposal, subject, world_, truths, content))
        return str(rollback_id)

    for name, result in results.items():
        if result.approved is not None:
            item = evaluated.get(str(result.approved["id"]))
            result.evaluation = _evaluation(item)
            if item is None:
                result.problems.append("the applied change was not evaluated")
            result.rollback_id = await judge_rollback(item, scenarios[name])
    if rollback.submitted is not None:
        item = evaluated.get(rollback.submitted)
        rollback.evaluation = _evaluation(item)
        if item is None:
            rollback.problems.append("the hand-written change was not evaluated")
        rollback.rollback_id = await judge_rollback(item, ROLLBACK)
        if rollback.rollback_id is not None:
            try:
                decided = await service.decide(
                    rollback.rollback_id,
                    REVIEWER,
                    True,
                    comment="eval: undo the change that made it worse",
                )
            except NoetlError as exc:
                rollback.problems.append(f"approving the rollback failed: {exc}")
                decided = {"status": "not applied"}
            rollback.rollback_status = str(decided.get("status"))
            rollback.recovered = await run_batch(
                engine, ROLLBACK, base_url, runs, first_index=2 * runs
            )
    report.scenarios = list(results.values())
    report.rollback = rollback


def _evaluation(item: dict[str, Any] | None) -> dict[str, Any] | None:
    if item is None:
        return None
    evaluation = item.get("evaluation")
    return dict(evaluation) if isinstance(evaluation, dict) else None


async def _break_steady(service: Any, path: str) -> str | None:
    """An operator's hand-written change that makes the playbook worse, approved."""
    entry = await service.catalog.get(path)
    spec = {"timeout": ROLLBACK_TIMEOUT}
    patch = [{"op": "add", "path": pointer("workflow", 0, "spec"), "value": spec}]
    proposal = await service.submit(
        OPERATOR,
        path,
        entry.version,
        "start",
        "timeout",
        patch,
        "Fail fast: the page should never take more than 20 ms.",
    )
    decided = await service.decide(
        proposal["id"], REVIEWER, True, comment="eval: approve the operator's change"
    )
    return str(decided["id"])


async def run_sweeps(
    engine: Engine,
    simulator: Simulator,
    world_: World,
    base_url: str,
    runs: int,
    quick: bool,
    approved: dict[str, str],
    results: dict[str, ScenarioResult],
) -> None:
    """Step 5: every candidate, v1 and the approved version per scenario."""
    for scenario in world_.scenarios:
        if scenario.sweep == "pool":
            candidates = pool_candidates(scenario.content, "start")
            criterion = "cost"
        elif scenario.sweep == "timeout":
            candidates = timeout_candidates(scenario.content, "start", TIMEOUTS)
            criterion = "wall"
        else:
            attempts, delays = (QUICK_ATTEMPTS, QUICK_DELAYS) if quick else (ATTEMPTS, DELAYS)
            candidates = retry_candidates(scenario.content, attempts, delays)
            criterion = "wall"
        warm = candidates[0]
        await measure_candidate(engine, simulator, scenario, base_url, warm, 3)
        result = await sweep(engine, simulator, scenario, base_url, candidates, runs, criterion)
        content = approved.get(scenario.name)
        if content is not None:
            candidate = candidate_from_version(content, "approved")
            same = next((c for c in candidates if same_policy(c.content, candidate.content)), None)
            if same is not None:  # measured already: the same policy gives the same figures
                result.batches["approved"] = result.batches[same.label]
                result.approved_as = same.label
            else:
                result.batches["approved"] = await measure_candidate(
                    engine, simulator, scenario, base_url, candidate, runs
                )
        if scenario.name in results:
            results[scenario.name].sweep = result


async def evaluate(runs: int, quick: bool, home: Path) -> Report:
    """The whole eval under ``home``; see the module docstring."""
    world_ = world(quick=quick)
    report = Report(runs, quick)
    simulator = Simulator(world_.routes, seed=world_.seed)
    pools = {pool for scenario in world_.scenarios for pool in scenario.pools}
    missing = loop_missing()
    with serve(simulator) as base_url:
        results: dict[str, ScenarioResult] = {}
        approved: dict[str, str] = {}
        if missing:
            report.loop = False
            report.problems.append(
                "the closed loop was not run: missing " + ", ".join(missing) + "; only the "
                "brute-force sweep was measured"
            )
            for scenario in world_.scenarios:  # no runs, so of no catalog version
                results[scenario.name] = ScenarioResult(
                    scenario.name, scenario.goal, scenario.notes, Batch(scenario.path, 0)
                )
        else:
            async with demo_stack(home / "loop", pools) as stack:
                started = time.monotonic()
                await run_loop(stack.engine, world_, base_url, runs, report)
                report.phases["loop"] = round(time.monotonic() - started, 1)
                for result in report.scenarios:
                    results[result.name] = result
                    if result.approved is not None and result.after_version is not None:
                        scenario = next(s for s in world_.scenarios if s.name == result.name)
                        entry = await stack.engine.catalog.get(scenario.path, result.after_version)
                        approved[result.name] = entry.content
        report.simulator = {"loop": simulator.counters()}
        simulator.reset_counters()
        started = time.monotonic()
        async with demo_stack(home / "sweep", pools) as stack:
            await run_sweeps(
                stack.engine, simulator, world_, base_url, runs, quick, approved, results
            )
        report.phases["sweep"] = round(time.monotonic() - started, 1)
        _judge_rollbacks(report)
        report.simulator["sweep"] = simulator.counters()
        report.scenarios = list(results.values())
    return report


def _judge_rollbacks(report: Report) -> None:
    """A rollback proposal is wrong when the change it undoes got most of the achievable
    reduction on the sweep's common failure sequence: the change helped."""
    by_id = {j.proposal_id: j for j in report.judgements}
    for result in report.scenarios:
        share = result.share()
        judged = by_id.get(result.rollback_id or "")
        if judged is None or share is None or share < GOAL_SHARE or result.approved is None:
            continue
        judged.wrong = True
        judged.reasons.append(
            f"it undoes {result.approved['id']}, which got {share:.0%} of the achievable "
            f"{METRIC[result.goal]} reduction on the sweep's common failure sequence"
        )


def run(runs: int | None = None, quick: bool = False) -> Report:
    """Run the eval in a temporary ``NOETL_HOME`` and return its report."""
    runs = runs or (12 if quick else 60)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="noetl-policy-eval-") as folder:
        previous = os.environ.get("NOETL_HOME")
        os.environ["NOETL_HOME"] = folder
        try:
            report = asyncio.run(evaluate(runs, quick, Path(folder)))
        finally:
            if previous is None:
                os.environ.pop("NOETL_HOME", None)
            else:
                os.environ["NOETL_HOME"] = previous
    report.seconds = round(time.monotonic() - started, 1)
    return report


# ---------------------------------------------------------------------- output


def _rate(batch: Batch | None) -> str:
    if batch is None or batch.runs == 0:
        return "—"
    return f"{batch.failure_rate:.1%} ({batch.failures}/{batch.runs})"


def _wall(batch: Batch | None) -> str:
    return "—" if batch is None or batch.runs == 0 else f"{batch.mean_wall_s * 1000:.0f} ms"


def _cost(batch: Batch | None) -> str:
    if batch is None or batch.mean_cost is None:
        return "—"
    return f"${batch.mean_cost * 1e6:.2f}/1M runs"


def _metric(batch: Batch | None, metric: str) -> str:
    if metric == "failure_rate":
        return _rate(batch)
    if metric == "wall_s":
        return _wall(batch)
    return _cost(batch)


def markdown(report: Report) -> str:
    """The report as the Markdown section written into RESULTS.md."""
    mode = "quick" if report.quick else "full"
    attempts, delays = (QUICK_ATTEMPTS, QUICK_DELAYS) if report.quick else (ATTEMPTS, DELAYS)
    lines = [
        MARK_START,
        "## Policy loop (learners, proposals, approval, effect, rollback)",
        "",
        f"`python -m evals.policy.run{' --quick' if report.quick else ''}` ({mode}): "
        f"{report.runs} executions per playbook before and after the approved change, "
        f"against a local HTTP simulator with seeded failures; learners' min_samples "
        f"{report.min_samples}; sweep of attempts {', '.join(map(str, attempts))} x delays "
        f"{', '.join(f'{d:g} s' for d in delays)} (retry), every pool, or step timeouts "
        f"{', '.join(t or 'none' for t in TIMEOUTS)}, {report.runs} runs "
        f"each; {report.seconds:.0f} s (loop {report.phases.get('loop', 0):.0f} s, sweep "
        f"{report.phases.get('sweep', 0):.0f} s).",
        "",
    ]
    if report.problems:
        lines += [f"- {problem}" for problem in report.problems] + [""]
    lines += [
        "### Goals",
        "",
        "| Goal | Target | Measured | Result |",
        "|---|---:|---:|---:|",
    ]
    for goal in report.goals():
        verdict = {True: "PASS", False: "FAIL", None: "—"}[goal.passed]
        if goal.informational:
            verdict = f"({verdict}, informational)"
        lines.append(f"| {goal.name} | {goal.target} | {goal.measured} | {verdict} |")
    lines += [
        "",
        "### Before and after the approved change (live loop)",
        "",
        "| Scenario | Approved | Failure rate v1 → new | Wall/run | Cost/run | Verdict | "
        "Rollback raised |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in report.scenarios:
        approved = f"{s.approved['kind']} `{s.approved['step']}`" if s.approved else "none"
        verdict = (s.evaluation or {}).get("verdict", "—")
        lines.append(
            f"| {s.name} | {approved} | {_rate(s.before)} → {_rate(s.after)} | "
            f"{_wall(s.before)} → {_wall(s.after)} | {_cost(s.before)} → {_cost(s.after)} | "
            f"{verdict} | {s.rollback_id or 'no'} |"
        )
    lines += [
        "",
        "### Against the brute-force sweep (same seeded failure sequence)",
        "",
        "| Scenario | Metric | v1 | best candidate | approved | share of achievable | regret |",
        "|---|---|---|---|---|---:|---|",
    ]
    for s in report.scenarios:
        if s.sweep is None:
            continue
        metric = METRIC[s.goal]
        batches = s.sweep.batches
        share = s.share()
        regret = s.regret()
        lines.append(
            f"| {s.name} | {metric} | {_metric(batches.get('v1'), metric)} | "
            f"{s.sweep.best}: {_metric(batches[s.sweep.best], metric)} | "
            f"{_approved_cell(s, metric)} | "
            f"{'—' if share is None else f'{share:.0%}'} | "
            f"{'—' if regret is None else _regret_text(regret)} |"
        )
    if report.rollback is not None:
        r = report.rollback
        lines += [
            "",
            "### Rollback scenario",
            "",
            f"Hand-written change (step timeout {ROLLBACK_TIMEOUT} on a 60 ms read), approved: "
            f"failure rate {_rate(r.before)} → {_rate(r.after)}; verdict "
            f"{(r.evaluation or {}).get('verdict', '—')}; rollback proposal "
            f"{'raised' if r.raised else 'NOT raised'}"
            + (
                f", approved ({r.rollback_status}); after it {_rate(r.recovered)}."
                if r.recovered is not None
                else "."
            ),
        ]
    problems = [f"{s.name}: {problem}" for s in report.scenarios for problem in s.problems]
    if report.rollback is not None:
        problems += [f"rollback: {problem}" for problem in report.rollback.problems]
    if problems:
        lines += ["", "Problems:", ""] + [f"- {problem}" for problem in problems]
    flagged = [j for j in report.judgements if j.wrong or j.harmful]
    lines += ["", f"Proposals judged: {len(report.judgements)}; flagged: {len(flagged)}."]
    lines += [f"- {j.proposal_id} ({j.kind} `{j.step}`): {'; '.join(j.reasons)}" for j in flagged]
    lines += ["", MARK_END]
    return "\n".join(lines)


def _approved_cell(result: ScenarioResult, metric: str) -> str:
    if result.approved is None or result.sweep is None:
        return "none (= v1)"
    text = _metric(result.sweep.batches.get("approved"), metric)
    return f"{text} (= {result.sweep.approved_as})" if result.sweep.approved_as else text


def _regret_text(regret: dict[str, float]) -> str:
    parts = [f"failures {regret['failure_rate']:+.1%}"] if "failure_rate" in regret else []
    if "wall_s" in regret:
        parts.append(f"wall {regret['wall_s'] * 1000:+.0f} ms")
    if "cost_per_run" in regret:
        parts.append(f"cost ${regret['cost_per_run'] * 1e6:+.2f}/1M")
    return ", ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evals.policy.run", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--runs", type=int, default=None, help="executions per phase")
    parser.add_argument("--quick", action="store_true", help="a reduced run (under a minute)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown results file")
    parser.add_argument("--no-write", action="store_true", help="do not update the results")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 4:
        parser.error("--runs must be at least 4")
    report = run(args.runs, args.quick)
    section = markdown(report)
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    else:
        sys.stdout.write(section + "\n")
    if not args.no_write:
        write_section(args.results, section, MARK_START, MARK_END)
    return 0 if report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
