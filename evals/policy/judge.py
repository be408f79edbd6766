"""Checks a proposal against the simulator's ground truth.

A proposal is **harmful** when the version it would create retries what must not be
retried: an error the simulator returns permanently (401 for a revoked user), or any
error of a step that is not idempotent (an HTTP POST, PUT or PATCH not marked
``spec.idempotent``). The patched policy is asked, through the engine's own rule
evaluation, what it does after such an attempt, so a narrowed rule that still matches
the permanent error counts as keeping the retry. A proposal is **wrong** (without being
harmful) when it removes a retry that gets past a transient error of a repeatable step,
moves a step to a pool that is both slower and dearer per run, or sets a timeout below
the 99th percentile of the service time the simulator is configured with (plus 10%).
Rollback proposals are judged the same way (undoing a change can re-add a harmful
retry); whether the change they undo really made things worse is for the sweep to tell
(see ``evals.policy.run``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from engine.core.policy import decide_after_attempt
from engine.dsl.loader import parse_playbook
from engine.dsl.models import Playbook, Policy, Step, parse_duration
from engine.errors import NoetlError
from evals.policy.scenarios import Scenario, World
from evals.policy.simulator import Route, Truth
from learning.errors import PatchError
from learning.policy.patch import apply_patch

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH"})
TIMEOUT_SLACK = 1.1  # a timeout must leave this much room over the p99 service time
P99 = 2.326  # standard normal quantile of the 99th percentile


@dataclass
class Judgement:
    """What the ground truth says of one proposal."""

    proposal_id: str
    scenario: str
    kind: str
    step: str | None
    proposed_by: str = ""
    harmful: bool = False
    wrong: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def by_learner(self) -> bool:
        """Raised by a policy learner (not the effect evaluator's rollback)."""
        return self.kind != "rollback"

    def to_dict(self) -> dict[str, Any]:
        return {
            "proposal": self.proposal_id,
            "scenario": self.scenario,
            "kind": self.kind,
            "step": self.step,
            "proposed_by": self.proposed_by,
            "harmful": self.harmful,
            "wrong": self.wrong,
            "reasons": list(self.reasons),
        }


def _error_output(status: int, retryable: bool) -> dict[str, Any]:
    """The ``output`` a policy sees after an HTTP attempt answered ``status``."""
    return {
        "status": "error",
        "data": {"status_code": status},
        "error": {
            "kind": "http",
            "code": status,
            "message": f"GET returned {status}",
            "retryable": retryable,
        },
        "http": {"status": status},
        "meta": {},
    }


def retries(policy: Policy | None, status: int, context: Mapping[str, Any]) -> bool:
    """Whether ``policy`` retries after an attempt that answered ``status``."""
    if policy is None:
        return False
    retryable = status == 429 or status >= 500
    output = _error_output(status, retryable)
    return decide_after_attempt(policy, output, 1, context).action == "retry"


def _policies(step: Step) -> list[tuple[Any, Policy | None]]:
    found: list[tuple[Any, Policy | None]] = []
    for tool in step.tools:
        spec = getattr(tool, "spec", None)
        found.append((tool, spec.policy if spec is not None else None))
    return found


def _repeatable(step: Step, tool: Any) -> bool:
    if step.spec is not None and step.spec.idempotent:
        return True
    method = str(getattr(tool, "method", None) or "GET").upper()
    return method not in UNSAFE_METHODS


def _context(playbook: Playbook) -> dict[str, Any]:
    workload = dict(playbook.workload)
    return {**workload, "workload": workload, "execution_id": "judge"}


def _pool_of(step: Step) -> str:
    if step.spec is not None and step.spec.runtime is not None:
        return step.spec.runtime.pool
    return "cpu"


def _service_s(route: Route, pool: str, z: float = 0.0) -> float:
    """The route's service time on ``pool``: the median, or the quantile ``z`` standard
    deviations up its log-normal spread (2.326: the 99th percentile)."""
    base = route.pool_ms.get(pool, route.latency_ms)
    if route.latency_spread > 0 and pool not in route.pool_ms:
        base *= math.exp(z * route.latency_spread)
    return base / 1000


def judge(
    proposal: Mapping[str, Any],
    scenario: Scenario,
    world: World,
    truths: Mapping[str, Truth],
    target_content: str,
) -> Judgement:
    """Judge ``proposal`` (a proposal as the service returns it) against the truth."""
    target = proposal.get("target") or {}
    step_name = target.get("step")
    kind = str(proposal.get("kind"))
    proposer = str((proposal.get("proposed_by") or {}).get("name") or "")
    verdict = Judgement(str(proposal.get("id")), scenario.name, kind, step_name, proposer)
    before = parse_playbook(target_content)
    try:
        document = apply_patch(yaml.safe_load(target_content), proposal.get("patch") or [])
        after = parse_playbook(yaml.safe_dump(document, sort_keys=False))
    except (PatchError, NoetlError) as exc:
        verdict.wrong = True
        verdict.reasons.append(f"the patch does not apply to its target: {exc}")
        return verdict
    context = _context(after)
    for step in after.workflow:
        route_name = scenario.steps.get(step.step)
        if route_name is None:
            continue
        truth = truths[route_name]
        names = {candidate.step for candidate in before.workflow}
        old_step = before.step(step.step) if step.step in names else None
        old = dict(enumerate(_policies(old_step))) if old_step is not None else {}
        for index, (tool, policy) in enumerate(_policies(step)):
            old_policy = old.get(index, (None, None))[1]
            if policy == old_policy:
                continue  # this proposal did not touch that tool's policy
            for status in sorted(truth.permanent):
                if retries(policy, status, context):
                    verdict.harmful = True
                    verdict.reasons.append(
                        f"step '{step.step}' would retry http_{status}, which the service "
                        "returns on every attempt (permanent)"
                    )
            if not _repeatable(step, tool):
                for status in sorted(truth.transient | {500, 503}):
                    if retries(policy, status, context):
                        verdict.harmful = True
                        verdict.reasons.append(
                            f"step '{step.step}' is a {getattr(tool, 'method', 'POST')} not "
                            f"marked idempotent and would be retried after http_{status}"
                        )
                        break
            else:
                for status in sorted(truth.transient):
                    if retries(old_policy, status, context) and not retries(
                        policy, status, context
                    ):
                        verdict.wrong = True
                        verdict.reasons.append(
                            f"step '{step.step}' would stop retrying http_{status}, a "
                            "transient error a later attempt gets past"
                        )
    if step_name is not None and step_name in scenario.steps:
        route = world.routes[scenario.steps[step_name]]
        old_step, new_step = before.step(step_name), after.step(step_name)
        if kind == "pool" and _pool_of(new_step) != _pool_of(old_step):
            _judge_pool(verdict, route, before, _pool_of(old_step), _pool_of(new_step))
        if kind == "timeout" and new_step.spec is not None and new_step.spec.timeout:
            limit = parse_duration(new_step.spec.timeout)
            needed = _service_s(route, _pool_of(new_step), P99) * TIMEOUT_SLACK
            if limit < needed:
                verdict.wrong = True
                verdict.reasons.append(
                    f"timeout {new_step.spec.timeout} is below the step's p99 service time "
                    f"on pool '{_pool_of(new_step)}' ({needed:.3g}s with room)"
                )
    if verdict.harmful:
        verdict.wrong = True
    return verdict


def _judge_pool(verdict: Judgement, route: Route, playbook: Playbook, old: str, new: str) -> None:
    prices = {pool.name: pool.cost_per_hour for pool in playbook.pools}
    old_s, new_s = _service_s(route, old), _service_s(route, new)
    old_price, new_price = prices.get(old), prices.get(new)
    if old_price is None or new_price is None:
        return
    if new_s > old_s and new_s * new_price > old_s * old_price:
        verdict.wrong = True
        verdict.reasons.append(
            f"pool '{new}' is slower ({new_s:.3g}s) and dearer per run than '{old}' ({old_s:.3g}s)"
        )
