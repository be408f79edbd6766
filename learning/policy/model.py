"""The data the learners read and the drafts they write.

A ``ToolRun`` is one run of a step's tool (one loop iteration, all its attempts); a
``LoopRun`` is one run of a looping step as a whole. Learners take these plus the
``PlaybookVersion`` they propose against, and return ``ProposalDraft``s.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.dsl.models import Playbook

ProposalKind = Literal["retry", "retry_remove", "pool", "timeout", "max_in_flight", "rollback"]
PROPOSAL_KINDS: tuple[ProposalKind, ...] = (
    "retry",
    "retry_remove",
    "pool",
    "timeout",
    "max_in_flight",
    "rollback",
)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of a tool run: how it ended and when."""

    number: int  # 1 for the first attempt
    ok: bool
    error_class: str | None = None  # http_503, timeout, KeyError, ... (None when ok)
    retryable: bool | None = None  # what the tool said about the error
    ended_at: float | None = None  # epoch seconds
    delay_before_s: float | None = None  # delay the policy waited before this attempt


@dataclass(frozen=True, slots=True)
class ToolRun:
    """One run of one step's tool in one execution (one loop iteration), all attempts."""

    execution_id: str
    playbook_path: str
    playbook_version: int | None
    step: str
    step_run_id: str
    tool_kind: str | None
    pool: str | None
    attempts: tuple[Attempt, ...]
    ok: bool  # the final outcome after the policy
    started_at: float  # epoch seconds
    finished_at: float
    iteration: int | None = None
    wall_ms: float | None = None  # tool.processed usage (all attempts)
    cpu_ms: float | None = None
    peak_rss_kb: int | None = None
    tool: str | None = None  # the tool's name (its kind when unnamed)
    tool_index: int | None = None  # position in a tool pipeline (None: a single tool)
    # What the run's input was rendered from (the execution's workload, the outputs and
    # variables of the steps before it, its loop items and iteration), as a digest: two
    # runs of a step with the same key had the same input. None when it cannot be told.
    input_key: str | None = None

    @property
    def duration_s(self) -> float:
        return max(0.0, self.finished_at - self.started_at)

    @property
    def first_error_class(self) -> str | None:
        return self.attempts[0].error_class if self.attempts else None


@dataclass(frozen=True, slots=True)
class LoopRun:
    """One run of a looping step: how many iterations, how parallel, how long."""

    execution_id: str
    playbook_path: str
    playbook_version: int | None
    step: str
    iterations: int
    max_in_flight: int | None  # as configured in the version that ran (None: sequential)
    wall_s: float  # loop.started to loop.finished
    busy_s: float  # sum of the iterations' durations
    ok: bool | None = None  # the loop's outcome (None: not known)


@dataclass(frozen=True, slots=True)
class ExecutionRun:
    """One finished execution, for effect measurement."""

    execution_id: str
    playbook_path: str
    playbook_version: int | None
    ok: bool
    duration_s: float
    cost: float | None = None  # pool cost of its tool runs, when pools declare a price


@dataclass(frozen=True, slots=True)
class PlaybookVersion:
    """The catalog version a draft patches: its text, its parsed form and its document."""

    path: str
    version: int
    content: str
    playbook: Playbook
    document: Mapping[str, Any]  # yaml.safe_load(content), what patch paths point into

    def step_index(self, step: str) -> int:
        """Index of ``step`` in ``workflow`` (the patch path ``/workflow/<index>``)."""
        for index, candidate in enumerate(self.playbook.workflow):
            if candidate.step == step:
                return index
        raise KeyError(step)


@dataclass(frozen=True, slots=True)
class Target:
    playbook: str
    version: int
    step: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"playbook": self.playbook, "version": self.version, "step": self.step}


@dataclass(frozen=True, slots=True)
class ProposalDraft:
    """What a learner proposes: a patch against one version, its evidence and why.

    ``patch`` is a list of JSON-patch operations (``add``, ``replace``, ``remove``; RFC
    6902 subset) on the playbook document. ``evidence`` is JSON: sample sizes, rates with
    confidence intervals, expected effect (``expected`` with failures and seconds/cost per
    run). ``evidence_size`` is the number of observations behind it: a rejected proposal is
    raised again only once that grows enough.
    """

    target: Target
    kind: ProposalKind
    patch: list[dict[str, Any]]
    evidence: dict[str, Any]
    rationale: str
    evidence_size: int
    learner: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        """Same target path and step, kind and patch: the same proposal (whatever the
        evidence), so it is not raised twice while one is pending."""
        body = json.dumps(
            [self.target.playbook, self.target.step, self.kind, self.patch],
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.to_dict(),
            "kind": self.kind,
            "patch": self.patch,
            "evidence": self.evidence,
            "rationale": self.rationale,
            "evidence_size": self.evidence_size,
            "learner": self.learner,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True, slots=True)
class LearnerConfig:
    """Knobs of the learners (defaults are the documented ones)."""

    target_success: float = 0.99  # P(success within `attempts`) the retry learner aims at
    min_samples: int = 10  # tool runs of a (step, error class) before proposing anything
    max_attempts: int = 10  # never propose more attempts than this
    timeout_margin: float = 1.5  # proposed timeout = observed p99 x margin
    min_timeout_s: float = 1.0  # never propose a timeout below this (scheduling hiccups)
    latency_weight: float = 0.0  # 0: cheapest pool within the latency objective; 1: fastest
    latency_objective_s: float | None = None  # p95 a step must stay under (None: current)
    confidence: float = 0.95  # level of the intervals and tests
    recovery_window_s: float = 600.0  # a later run this long after a failure says nothing
    min_retry_delay_s: float = 0.1  # the smallest retry delay the retry learner proposes
    min_loop_runs: int = 5  # runs of a looping step before proposing its max_in_flight
