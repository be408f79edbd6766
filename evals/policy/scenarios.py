"""The eval's scenarios: each a playbook, the simulator routes it calls and what is known
to be right for it.

The ground truth lives in the simulator's route behaviour (which statuses are transient,
which permanent), in the playbooks (which steps may be repeated: an HTTP GET, or a step
marked ``spec.idempotent``) and in the pools' service times and prices. The judge
(:mod:`evals.policy.judge`) checks proposals against it, and the sweep
(:mod:`evals.policy.sweep`) searches the policies it allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from evals.policy.simulator import Route

PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
USERS = ("alice", "bob", "carol", "mallory")  # mallory's token is revoked: 401 every time
REVOKED = frozenset({"mallory"})
Goal = Literal["failures", "wall", "cost", "rollback"]
SweepKind = Literal["retry", "pool", "timeout"]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One playbook and what the eval expects of the loop on it."""

    name: str
    file: str
    goal: Goal  # what the approved change should improve
    steps: Mapping[str, str]  # step -> the simulator route it calls
    sweep: SweepKind = "retry"  # what the brute-force sweep varies
    rotate_users: bool = False  # workload `user` cycles through USERS, run by run
    pools: tuple[str, ...] = ()
    earlier_pool: str | None = None  # the version before the file ran `start` there
    notes: str = ""

    @property
    def content(self) -> str:
        return (PLAYBOOKS / self.file).read_text()

    @property
    def document(self) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load(self.content)
        return loaded

    @property
    def path(self) -> str:
        metadata = self.document["metadata"]
        return str(metadata.get("path") or metadata["name"])

    def earlier_content(self) -> str | None:
        """The version before the file's, when the scenario has one: ``start`` ran on
        ``earlier_pool`` (the history the pool learner compares against)."""
        if self.earlier_pool is None:
            return None
        document = self.document
        for step in document["workflow"]:
            if step["step"] == "start":
                step.setdefault("spec", {}).setdefault("runtime", {})["pool"] = self.earlier_pool
        return yaml.safe_dump(document, sort_keys=False)

    def workload(self, base_url: str, index: int) -> dict[str, Any]:
        """The execution's workload for run number ``index``."""
        workload: dict[str, Any] = {"base_url": base_url}
        if self.rotate_users:
            workload["user"] = USERS[index % len(USERS)]
        return workload


@dataclass(frozen=True, slots=True)
class World:
    """The simulator's routes for a run of the eval, and the scenarios on them."""

    routes: Mapping[str, Route]
    scenarios: tuple[Scenario, ...]
    seed: int = 7


def world(*, quick: bool = False) -> World:
    """The standard world. ``quick`` raises the transient failure rates so that a short
    run still shows the learners enough failures, shortens the heavy step and leaves out
    the tight-timeout scenario (its failures are too rare for a short run)."""
    flaky = 0.45 if quick else 0.3
    small, large = (120.0, 15.0) if quick else (200.0, 25.0)
    routes = {
        "flaky": Route(fail_rate=flaky),
        "auth": Route(denied=REVOKED),
        "orders": Route(fail_rate=flaky),
        "reservations": Route(fail_rate=flaky),
        "heavy": Route(pool_ms={"small": small, "large": large}, latency_ms=small),
        "steady": Route(fail_rate=0.02, latency_ms=60.0),
        "slow": Route(latency_ms=70.0, latency_spread=0.25),
    }
    scenarios: tuple[Scenario, ...] = (
        Scenario(
            "transient_get",
            "flaky_get.yaml",
            "failures",
            {"start": "flaky"},
            notes=f"GET, 503 at p={flaky}, no retry policy in v1",
        ),
        Scenario(
            "permanent_401",
            "revoked_token.yaml",
            "wall",
            {"start": "auth"},
            rotate_users=True,
            notes="GET, 401 for one user in four, v1 retries every error 5 times",
        ),
        Scenario(
            "post_orders",
            "create_order.yaml",
            "failures",
            {"start": "reservations", "create_order": "orders"},
            notes=f"POST marked idempotent, then a POST that is not, 503 at p={flaky} each",
        ),
        Scenario(
            "heavy_pool",
            "heavy_report.yaml",
            "cost",
            {"start": "heavy"},
            sweep="pool",
            pools=("small", "large"),
            earlier_pool="large",
            notes=f"{small:g} ms on pool small ($0.10/h), {large:g} ms on large ($0.20/h); the "
            "version before ran on large, then it was moved to small by hand for the lower "
            "hourly price",
        ),
    )
    if not quick:
        scenarios += (
            Scenario(
                "tight_timeout",
                "tight_timeout.yaml",
                "failures",
                {"start": "slow"},
                sweep="timeout",
                notes="GET answering in 70 ms (log-normal, sigma 0.25) under a 100 ms "
                "step timeout: about 8% of the runs time out",
            ),
        )
    return World(routes, scenarios)


ROLLBACK = Scenario(
    "rollback",
    "steady_get.yaml",
    "rollback",
    {"start": "steady"},
    notes="GET answering in 60 ms, 503 at p=0.02; an operator's hand-written change sets "
    "a 20 ms step timeout",
)
ROLLBACK_TIMEOUT = "20ms"
