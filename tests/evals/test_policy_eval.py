"""The policy eval: its simulator, its judge, its sweep candidates, and a reduced real run
of the whole loop."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import yaml

from evals.policy import run
from evals.policy.judge import judge
from evals.policy.scenarios import world
from evals.policy.simulator import Route, Simulator, serve, truth
from evals.policy.sweep import pool_candidates, retry_candidates, timeout_candidates
from noetl_agent.demo.service import POOL_HEADER


def test_simulator_failures_are_seeded_and_permanent_errors_stay() -> None:
    routes = {
        "flaky": Route(fail_rate=0.5),
        "auth": Route(denied=frozenset({"mallory"})),
        "heavy": Route(pool_ms={"small": 0.0, "large": 0.0}),
        "limited": Route(limit_every=2, retry_after_s=3),
    }
    simulator = Simulator(routes, seed=3)
    with serve(simulator) as base, httpx.Client(base_url=base) as client:
        first = [client.get("/flaky/x").status_code for _ in range(20)]
        simulator.reseed()
        again = [client.get("/flaky/x").status_code for _ in range(20)]
        denied = {client.get("/auth/mallory").status_code for _ in range(5)}
        allowed = client.get("/auth/alice").status_code
        pooled = client.get("/heavy/r", headers={POOL_HEADER: "large"}).json()
        limited = [client.get("/limited") for _ in range(2)]
    assert first == again and {200, 503} == set(first)
    assert denied == {401} and allowed == 200
    assert pooled["pool"] == "large"
    assert limited[1].status_code == 429 and limited[1].headers["Retry-After"] == "3"
    counters = simulator.counters()
    assert counters["flaky"]["requests"] == 40
    assert counters["heavy"]["pools"] == {"large": 1}
    assert truth(routes["auth"]).permanent == {401}
    assert truth(routes["limited"]).transient == {429}


def test_judge_flags_retrying_a_permanent_error_and_a_post() -> None:
    standard = world()
    scenarios = {s.name: s for s in standard.scenarios}
    truths = {name: truth(route) for name, route in standard.routes.items()}
    retry_all = {"rules": [{"when": "{{ output.status == 'error' }}", "then": {"do": "retry"}}]}
    auth = scenarios["permanent_401"]
    keeps = {
        "id": "p-1",
        "kind": "retry",
        "target": {"playbook": auth.path, "version": 1, "step": "start"},
        "patch": [{"op": "replace", "path": "/workflow/0/tool/spec/policy", "value": retry_all}],
    }
    verdict = judge(keeps, auth, standard, truths, auth.content)
    assert verdict.harmful and "http_401" in verdict.reasons[0]

    orders = scenarios["post_orders"]
    post = {
        "id": "p-2",
        "kind": "retry",
        "target": {"playbook": orders.path, "version": 1, "step": "create_order"},
        "patch": [{"op": "add", "path": "/workflow/1/tool/spec", "value": {"policy": retry_all}}],
    }
    assert judge(post, orders, standard, truths, orders.content).harmful
    reservation = {
        "id": "p-3",
        "kind": "retry",
        "target": {"playbook": orders.path, "version": 1, "step": "start"},
        "patch": [{"op": "add", "path": "/workflow/0/tool/spec/policy", "value": retry_all}],
    }
    fine = judge(reservation, orders, standard, truths, orders.content)
    assert not fine.harmful and not fine.wrong

    slow = scenarios["tight_timeout"]  # 70 ms median, sigma 0.25: p99 about 125 ms

    def timeout(value: str) -> dict[str, Any]:
        return {
            "id": f"p-{value}",
            "kind": "timeout",
            "target": {"playbook": slow.path, "version": 1, "step": "start"},
            "patch": [{"op": "replace", "path": "/workflow/0/spec/timeout", "value": value}],
        }

    assert judge(timeout("110ms"), slow, standard, truths, slow.content).wrong
    assert not judge(timeout("200ms"), slow, standard, truths, slow.content).wrong


def test_sweep_candidates_only_retry_repeatable_steps() -> None:
    orders = next(s for s in world().scenarios if s.name == "post_orders")
    candidates = retry_candidates(orders.content, (1, 3), (0.0, 0.1))
    assert [c.label for c in candidates] == ["v1", "a3-d0", "a3-d0.1"]  # a1 is v1 itself
    document = yaml.safe_load(candidates[1].content)
    assert document["metadata"]["path"].endswith("--a3-d0")
    assert document["workflow"][0]["tool"]["spec"]["policy"]["rules"][0]["then"]["attempts"] == 3
    assert "spec" not in document["workflow"][1]["tool"]  # the POST that is not idempotent
    heavy = next(s for s in world().scenarios if s.name == "heavy_pool")
    pools = [c.label for c in pool_candidates(heavy.content, "start")]
    assert pools == ["v1", "pool-large"]  # v1 runs on small
    slow = next(s for s in world().scenarios if s.name == "tight_timeout")
    limits = timeout_candidates(slow.content, "start", ("1s", None))
    assert [c.label for c in limits] == ["v1", "timeout-1s", "timeout-none"]
    assert "spec" not in yaml.safe_load(limits[2].content)["workflow"][0]


@pytest.mark.slow
def test_quick_run_of_the_whole_loop() -> None:
    report = run.run(quick=True)
    data = report.to_dict()

    assert data["loop"] is True, data["problems"]
    assert data["harmful_learned"] == 0, [j for j in data["judgements"] if j["harmful"]]
    names = {s["name"] for s in data["scenarios"]}
    assert names == {"transient_get", "permanent_401", "post_orders", "heavy_pool"}
    for scenario in data["scenarios"]:
        assert scenario["before"]["runs"] == report.runs
        assert scenario["approved"] is not None, scenario["name"]
        assert scenario["after"]["version"] > scenario["before"]["version"]
        assert scenario["sweep"]["best"] in scenario["sweep"]["candidates"]
        assert scenario["evaluation"]["verdict"] in ("better", "worse", "no_change", "inconclusive")
    rollback = data["rollback"]
    assert rollback["verdict"] == "worse" and rollback["rollback_raised"]
    assert rollback["after_rollback"]["failure_rate"] < rollback["after"]["failure_rate"]
    assert {g["goal"] for g in data["goals"]} >= {"harmful proposals of the learners"}
    section = run.markdown(report)
    assert section.startswith(run.MARK_START) and section.endswith(run.MARK_END)
