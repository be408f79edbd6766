"""The brute-force reference: the same simulator run under every candidate policy.

For a retry scenario every candidate puts one retry rule (any error, ``attempts`` 1 to 6,
a fixed ``delay``) on each step that may be repeated (a GET, or a step marked
``spec.idempotent``) and leaves the others as they are; for a pool scenario every
candidate runs the step on one of the declared pools; for a timeout scenario every
candidate gives the step another ``spec.timeout`` (or none). Each candidate is registered under
its own catalog path in a store of its own (the learners never see these runs) and run
on the same reseeded failure sequence, so the candidates differ only in their policy.
The best is the one with the fewest failures, then the shortest mean wall time (retry and
timeout scenarios) or the lowest cost per run (pool scenarios).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from engine.dsl.loader import parse_playbook
from engine.runtime.embedded import Engine
from evals.policy.judge import UNSAFE_METHODS
from evals.policy.measure import summary
from evals.policy.scenarios import Scenario
from evals.policy.simulator import Simulator
from noetl_agent.demo.runs import Batch, run_batch

V1 = "v1"


@dataclass(frozen=True, slots=True)
class Candidate:
    label: str
    content: str


@dataclass
class SweepResult:
    """Every candidate's batch and which was best."""

    scenario: str
    criterion: str  # wall | cost: the tie-break after failures
    batches: dict[str, Batch] = field(default_factory=dict)
    approved_as: str | None = None  # the candidate the approved version is identical to

    @property
    def best(self) -> str:
        def key(label: str) -> tuple[float, float]:
            batch = self.batches[label]
            second = batch.mean_cost if self.criterion == "cost" else batch.mean_wall_s
            return (batch.failure_rate, second if second is not None else float("inf"))

        candidates = [label for label in self.batches if label != "approved"]
        return min(candidates, key=key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion,
            "best": self.best,
            "approved_as": self.approved_as,
            "candidates": {label: summary(batch) for label, batch in self.batches.items()},
        }


def _repeatable_steps(document: dict[str, Any]) -> list[int]:
    indexes = []
    for index, step in enumerate(document["workflow"]):
        tool = step["tool"]
        method = str(tool.get("method") or "GET").upper() if isinstance(tool, dict) else "GET"
        idempotent = bool((step.get("spec") or {}).get("idempotent"))
        if idempotent or method not in UNSAFE_METHODS:
            indexes.append(index)
    return indexes


def _renamed(document: dict[str, Any], label: str) -> dict[str, Any]:
    renamed = copy.deepcopy(document)
    metadata = renamed["metadata"]
    base = str(metadata.get("path") or metadata["name"])
    metadata["path"] = f"{base}--{label}"
    return renamed


def same_policy(a: str, b: str) -> bool:
    """Whether two candidates are the same playbook but for their catalog path."""
    first, second = yaml.safe_load(a), yaml.safe_load(b)
    first["metadata"].pop("path", None)
    second["metadata"].pop("path", None)
    return bool(first == second)


def _distinct(candidates: list[Candidate]) -> list[Candidate]:
    """v1 and the candidates that differ from it (v1 is measured once, as itself)."""
    v1 = candidates[0]
    return [v1] + [c for c in candidates[1:] if not same_policy(c.content, v1.content)]


def _render(document: dict[str, Any]) -> str:
    content = yaml.safe_dump(document, sort_keys=False)
    parse_playbook(content)  # a candidate must be a valid playbook
    return content


def retry_candidates(
    content: str, attempts: Sequence[int], delays: Sequence[float]
) -> list[Candidate]:
    """v1 as it is, then each (attempts, delay) on every repeatable step (those that
    differ from v1)."""
    document = yaml.safe_load(content)
    candidates = [Candidate(V1, _render(_renamed(document, V1)))]
    steps = _repeatable_steps(document)
    for count in attempts:
        for delay in delays if count > 1 else [0.0]:
            label = f"a{count}-d{delay:g}"
            variant = _renamed(document, label)
            for index in steps:
                tool = variant["workflow"][index]["tool"]
                spec = tool.setdefault("spec", {})
                if count == 1:
                    spec.pop("policy", None)
                else:
                    spec["policy"] = {
                        "rules": [
                            {
                                "when": "{{ output.status == 'error' }}",
                                "then": {
                                    "do": "retry",
                                    "attempts": count,
                                    "backoff": "none",
                                    "delay": delay,
                                },
                            }
                        ]
                    }
                if not spec:
                    tool.pop("spec")
            candidates.append(Candidate(label, _render(variant)))
    return _distinct(candidates)


def timeout_candidates(content: str, step: str, values: Sequence[str | None]) -> list[Candidate]:
    """v1 as it is, then ``step`` with each ``spec.timeout`` (None: no step timeout)."""
    document = yaml.safe_load(content)
    candidates = [Candidate(V1, _render(_renamed(document, V1)))]
    for value in values:
        label = f"timeout-{value or 'none'}"
        variant = _renamed(document, label)
        for entry in variant["workflow"]:
            if entry["step"] != step:
                continue
            spec = entry.setdefault("spec", {})
            if value is None:
                spec.pop("timeout", None)
            else:
                spec["timeout"] = value
            if not spec:
                entry.pop("spec")
        candidates.append(Candidate(label, _render(variant)))
    return _distinct(candidates)


def pool_candidates(content: str, step: str) -> list[Candidate]:
    """v1 as it is, then ``step`` on each declared pool."""
    document = yaml.safe_load(content)
    candidates = [Candidate(V1, _render(_renamed(document, V1)))]
    for pool in document.get("pools") or []:
        name = str(pool["name"])
        variant = _renamed(document, f"pool-{name}")
        for entry in variant["workflow"]:
            if entry["step"] == step:
                entry.setdefault("spec", {}).setdefault("runtime", {})["pool"] = name
        candidates.append(Candidate(f"pool-{name}", _render(variant)))
    return _distinct(candidates)


async def measure_candidate(
    engine: Engine,
    simulator: Simulator,
    scenario: Scenario,
    base_url: str,
    candidate: Candidate,
    runs: int,
) -> Batch:
    """Register ``candidate`` and run it on a freshly seeded simulator."""
    entry = await engine.register(candidate.content)
    simulator.reseed()
    return await run_batch(engine, scenario, base_url, runs, path=entry.path)


async def sweep(
    engine: Engine,
    simulator: Simulator,
    scenario: Scenario,
    base_url: str,
    candidates: Sequence[Candidate],
    runs: int,
    criterion: str,
) -> SweepResult:
    """Measure every candidate; see the module docstring."""
    result = SweepResult(scenario.name, criterion)
    for candidate in candidates:
        result.batches[candidate.label] = await measure_candidate(
            engine, simulator, scenario, base_url, candidate, runs
        )
    return result


def candidate_from_version(content: str, label: str) -> Candidate:
    """A catalog version of the loop, renamed to run beside the sweep's candidates."""
    return Candidate(label, _render(_renamed(yaml.safe_load(content), label)))
