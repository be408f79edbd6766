"""Which executions measure a change: those that ran while it was in force, from the
version it created up to the version of the next change of the same playbook. A change
that a second change overtook before enough executions ran is still measured, on what
did run, and its verdict says that the window was cut short."""

from __future__ import annotations

import yaml

from learning.policy.patch import render
from tests.policy.conftest import HUMAN, OPERATOR, OTHER_HUMAN, SWITCH

PATH = "policy/switch"
TIMEOUT = [{"op": "add", "path": "/workflow/0/spec", "value": {"timeout": "30s"}}]
FAIL = [{"op": "replace", "path": "/workload/fail", "value": True}]


async def _runs(engine, times: int, status: str = "completed") -> None:
    for count in range(times):
        assert (await engine.run(PATH)).status == status, count


async def _apply(service, version: int, kind: str, patch: list, why: str) -> dict:
    change = await service.submit(OPERATOR, PATH, version, "work", kind, patch, why)
    return await service.decide(change["id"], HUMAN, True, "measure it")


async def test_a_change_overtaken_by_a_second_one_is_measured_on_its_own_window(engine, services):
    service = services(evaluate_after=10)
    await engine.register(SWITCH)
    await _runs(engine, 10)
    first = await _apply(service, 1, "timeout", TIMEOUT, "stop hung runs")
    assert first["applied_version"] == 2
    await _runs(engine, 4)
    assert await service.evaluate_due() == []  # 4 of 10: the window is still open

    retry = {"rules": [{"when": "{{ output.status == 'error' }}", "then": {"do": "retry"}}]}
    second = await _apply(
        service,
        2,
        "retry",
        [{"op": "add", "path": "/workflow/0/tool/spec", "value": {"policy": retry}}],
        "retry the step",
    )
    assert second["applied_version"] == 3

    # The second change closed the first one's window: measured now, on version 2 alone.
    [evaluated] = await service.evaluate_due()
    assert evaluated["id"] == first["id"]
    evaluation = evaluated["evaluation"]
    assert (evaluation["n_before"], evaluation["n_after"]) == (10, 4)
    assert evaluation["window"] == {
        "versions": [2],
        "wanted": 10,
        "closed_by": f"proposal {second['id']} (retry) was applied as version 3",
        "closed_at_version": 3,
        "cut_short": True,
    }
    assert "cut the window short" in evaluation["summary"]
    assert second["id"] in evaluation["summary"]

    # The second change's runs are its own: they never count for the first one.
    await _runs(engine, 10)
    [later] = await service.evaluate_due()
    assert later["id"] == second["id"]
    window = later["evaluation"]["window"]
    assert window["versions"] == [3] and window["cut_short"] is False
    assert (later["evaluation"]["n_before"], later["evaluation"]["n_after"]) == (4, 10)
    assert "cut the window short" not in later["evaluation"]["summary"]
    assert await service.evaluate_due() == []  # each change is measured once


async def test_a_version_registered_by_hand_that_keeps_the_change_is_in_its_window(
    engine, services
):
    service = services(evaluate_after=8)
    await engine.register(SWITCH)
    await _runs(engine, 8)
    first = await _apply(service, 1, "timeout", TIMEOUT, "stop hung runs")
    await _runs(engine, 3)
    # Someone edits the playbook by hand (a new description): the timeout stays in force.
    v2 = await engine.catalog.get(PATH, 2)
    document = yaml.safe_load(v2.content)
    document["metadata"]["description"] = "edited by hand"
    assert (await engine.register(render(document))).version == 3
    await _runs(engine, 4)
    assert await service.evaluate_due() == []  # 7 of 8 while in force, window open
    await _runs(engine, 1)
    [evaluated] = await service.evaluate_due()
    assert evaluated["id"] == first["id"]
    window = evaluated["evaluation"]["window"]
    assert window["versions"] == [2, 3] and window["closed_by"] is None
    assert evaluated["evaluation"]["n_after"] == 8


async def test_a_hand_edit_that_drops_the_change_closes_its_window(engine, services):
    service = services(evaluate_after=8)
    await engine.register(SWITCH)
    await _runs(engine, 8)
    first = await _apply(service, 1, "timeout", TIMEOUT, "stop hung runs")
    await _runs(engine, 2)
    # Version 1's text registered again: the timeout is gone.
    assert (await engine.register(SWITCH)).version == 3
    [evaluated] = await service.evaluate_due()
    assert evaluated["id"] == first["id"]
    window = evaluated["evaluation"]["window"]
    assert window["versions"] == [2]
    assert window["closed_by"] == "version 3 was registered without this change"
    assert window["cut_short"] is True


async def test_a_worse_change_cut_short_is_rolled_back_on_the_latest_version(engine, services):
    service = services(evaluate_after=20)
    await engine.register(SWITCH)
    await _runs(engine, 10)
    bad = await _apply(service, 1, "timeout", FAIL, "a change that turns out badly")
    await _runs(engine, 8, "failed")
    other = await _apply(service, 2, "timeout", TIMEOUT, "an unrelated change")
    assert other["applied_version"] == 3

    [evaluated] = await service.evaluate_due()
    evaluation = evaluated["evaluation"]
    assert evaluated["id"] == bad["id"]
    assert evaluation["verdict"] == "worse" and evaluation["window"]["cut_short"] is True
    rollback = await service.get(evaluation["rollback_proposal_id"])
    # Version 3 still carries the bad change where it was made: undone there, keeping 3's.
    assert rollback["target"]["version"] == 3 and rollback["status"] == "pending"
    restored = await service.decide(rollback["id"], OTHER_HUMAN, True, "undo it")
    assert restored["applied_version"] == 4
    latest = yaml.safe_load((await engine.catalog.get(PATH)).content)
    assert latest["workload"]["fail"] is False
    assert latest["workflow"][0]["spec"] == {"timeout": "30s"}
    assert (await service.get(bad["id"]))["status"] == "rolled_back"
    await _runs(engine, 1)


async def test_no_rollback_when_the_latest_version_no_longer_holds_the_change(engine, services):
    service = services(evaluate_after=20)
    await engine.register(SWITCH)
    await _runs(engine, 10)
    bad = await _apply(service, 1, "timeout", FAIL, "a change that turns out badly")
    await _runs(engine, 8, "failed")
    # A second change rewrites the very value the first one set.
    other = await _apply(
        service,
        2,
        "timeout",
        [{"op": "replace", "path": "/workload", "value": {"fail": False, "extra": 1}}],
        "rewrite the workload",
    )
    assert other["applied_version"] == 3
    [evaluated] = await service.evaluate_due()
    evaluation = evaluated["evaluation"]
    assert evaluated["id"] == bad["id"]
    assert evaluation["verdict"] == "worse"
    assert evaluation["rollback_proposal_id"] is None
    assert "no longer holds this change" in evaluation["rollback_not_raised"]
