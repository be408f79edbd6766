"""Fixtures of the closed-loop tests: an embedded engine on SQLite, a proposal service on
it with a clock the test moves, and the playbooks the proposals change."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.runtime.embedded import Engine
from noetl_agent.policy_settings import PolicySettings
from noetl_agent.principals import Principal
from noetl_agent.proposals import ProposalService
from tests.api.conftest import api, stack  # noqa: F401  (the API fixtures, for the routes)
from tests.flaky_service import alternating_service

# A step whose first attempt fails in every execution (a counter file per execution).
FLAKY = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: flaky, path: policy/flaky}
workload: {counter: ""}
workflow:
  - step: fetch
    tool:
      kind: python
      code: |
        from pathlib import Path

        def main(counter):
            path = Path(counter)
            attempt = int(path.read_text()) + 1 if path.exists() else 1
            path.write_text(str(attempt))
            if attempt < 2:
                raise ConnectionError(f"transient failure on attempt {attempt}")
            return {"attempt": attempt}
      input:
        counter: "{{ counter }}"
"""
RETRY_PATCH = [
    {
        "op": "add",
        "path": "/workflow/0/tool/spec",
        "value": {
            "policy": {
                "rules": [
                    {
                        "when": "{{ output.status == 'error' }}",
                        "then": {"do": "retry", "attempts": 3, "delay": 0.01},
                    }
                ]
            }
        },
    }
]
# A step that fails when the workload says so: a patch of ``fail`` makes it worse.
SWITCH = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: switch, path: policy/switch}
workload: {fail: false}
workflow:
  - step: work
    tool:
      kind: python
      code: |
        def main(fail):
            if fail:
                raise RuntimeError("the switch is set to fail")
            return {"ok": True}
      input:
        fail: "{{ fail }}"
"""
# An HTTP call whose service answers 503 to every other request (see ``flaky_service``).
FLAKY_HTTP = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: flakyhttp, path: policy/flakyhttp}
workload: {base: ""}
workflow:
  - step: fetch
    tool: {kind: http, url: "{{ base }}/data"}
"""
HUMAN = Principal("alice", "human", frozenset({"approver"}))
OTHER_HUMAN = Principal("bob", "human", frozenset({"approver"}))
OPERATOR = Principal("ops-bot", "agent", frozenset({"operator"}))
HUMAN_OPERATOR = Principal("carol", "human", frozenset({"operator", "approver"}))
VIEWER = Principal("vic", "human", frozenset({"viewer"}))
AGENT_APPROVER = Principal("robot", "agent", frozenset({"approver", "admin"}))


@dataclass
class Clock:
    """A clock the test moves forward."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def services(engine: Engine, clock: Clock) -> Callable[..., ProposalService]:
    """``services(quorum=1, expiry=timedelta, evaluate_after=20)``: a proposal service on
    the test's engine; several share the one event log, as servers would."""

    def make(**settings: object) -> ProposalService:
        return ProposalService(engine, settings=PolicySettings(**settings), clock=clock)  # type: ignore[arg-type]

    return make


@pytest.fixture
def counters(tmp_path: Path) -> Callable[[], str]:
    """A fresh counter file path per call (one per execution of FLAKY)."""
    used = 0

    def fresh() -> str:
        nonlocal used
        used += 1
        return str(tmp_path / f"counter-{used}")

    return fresh


@pytest.fixture
def flaky_service() -> Iterator[str]:
    """A local HTTP service failing every other request with 503; yields its base URL."""
    with alternating_service() as url:
        yield url
