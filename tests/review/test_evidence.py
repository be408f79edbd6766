"""A learner's proposal on the page: measured executions, its evidence with intervals,
the expected effect, and why no similar failures are listed."""

from __future__ import annotations

import re
from html import unescape

import pytest
import yaml

from learning.policy.patch import render
from noetl_agent.review.evidence import flatten
from tests.api.conftest import register, run_times
from tests.flaky_service import alternating_service
from tests.review.conftest import login, propose

FLAKY = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: flaky, path: review/flaky}
workload: {base: ""}
workflow:
  - step: fetch
    tool: {kind: http, url: "{{ base }}/data"}
"""


@pytest.mark.parametrize(
    ("evidence", "facts"),
    [
        ({"a": 1, "b": None}, [("a", "1"), ("b", "n/a")]),
        (
            {"counts": {"runs": 20, "failed": 3}},
            [("counts / runs", "20"), ("counts / failed", "3")],
        ),
        ({"notes": ["x", "y"], "empty": []}, [("notes", "x, y"), ("empty", "none")]),
        (
            {
                "p": {
                    "rate": 0.5,
                    "low": 0.3,
                    "high": 0.7,
                    "recovered": 5,
                    "trials": 10,
                    "confidence": 0.95,
                }
            },
            [("p", "50.0% (30.0%-70.0%, 95.0% interval, 5 of 10)")],
        ),
        (
            {"within": {"proposed": {"attempts": 3, "p": 0.9, "low": 0.8, "high": 0.95}}},
            [("within / proposed", "90.0% (80.0%-95.0% interval, within 3 attempts)")],
        ),
        ({"similar_failures": {"available": False}, "x": "y"}, [("x", "y")]),
    ],
)
def test_flatten_labels_every_fact(evidence, facts):
    assert flatten(evidence) == facts


async def test_a_learner_proposal_shows_its_measured_evidence(api, stack):
    path = await register(api, stack, FLAKY)
    with alternating_service() as base:  # every other request answers 503
        await run_times(api, stack, path, {"base": base}, 20)
    report = await api.post(
        "/api/proposals/suggest", json={"playbook": path}, headers=stack.auth("operator")
    )
    [proposal] = report.json()["proposed"]
    failed = [run for run in await stack.engine.events.list_executions(status="failed", limit=100)]
    assert 0 < len(failed) < 20

    await login(api, stack.secrets["approver"])
    page = await api.get(f"/review/proposals/{proposal['id']}")
    assert page.status_code == 200
    html = unescape(page.text)
    row = re.search(r'<tr class="sample">(.*?)</tr>', html, re.S)
    assert row is not None
    cells = re.findall(r"<td>(.*?)</td>", row.group(1), re.S)
    assert cells[:3] == ["v1 (before)", "20", str(len(failed))]
    assert html.count('class="failed"') == len(failed)
    assert "expected after (learner)" in html and ">expected after</text>" in html
    assert re.search(r"<dt>per_attempt_success</dt><dd>[\d.]+% \([\d.]+%-[\d.]+%, 95", html)
    assert "<dt>error_class</dt><dd>http_503</dd>" in html
    assert "None shown: this stack has no search index." in html
    assert "http_503" in html  # the rationale


def _row(html: str, label: str) -> list[str]:
    """The cells of the samples row whose first cell is ``label``."""
    for row in re.findall(r'<tr class="sample">(.*?)</tr>', html, re.S):
        cells = re.findall(r"<td>(.*?)</td>", row, re.S)
        if cells and cells[0] == label:
            return cells
    raise AssertionError(f"no sample row {label!r} on the page")


async def test_after_covers_every_version_the_change_was_in_force(api, stack):
    csrf = await login(api, stack.secrets["approver"])
    pid = await propose(api, stack)  # api/hello version 1: n becomes 5
    for _ in range(3):
        assert (await stack.engine.run("api/hello")).status == "completed"
    done = await api.post(
        f"/review/proposals/{pid}/decision", data={"csrf": csrf, "decision": "approve"}
    )
    assert done.status_code == 303, done.text
    await stack.engine.run("api/hello")  # on version 2, the change's own version
    # A hand edit that keeps the change: version 3 is still in its window.
    document = yaml.safe_load((await stack.engine.catalog.get("api/hello", 2)).content)
    document["metadata"]["description"] = "edited by hand"
    assert (await stack.engine.register(render(document))).version == 3
    for _ in range(2):
        await stack.engine.run("api/hello")

    html = unescape((await api.get(f"/review/proposals/{pid}")).text)
    assert _row(html, "v1 (before)")[1:3] == ["3", "0"]
    assert _row(html, "v2-v3 (after)")[1:3] == ["3", "0"]
    assert ">v2-v3 (after)</text>" in html  # the plots carry the same label
    assert "on versions v2-v3." in html and 'id="verdict"' not in html

    # The next change closes the window after 3 executions: measured as inconclusive.
    second = await propose(api, stack, value=7)
    approved = await api.post(
        f"/review/proposals/{second}/decision", data={"csrf": csrf, "decision": "approve"}
    )
    assert approved.status_code == 303, approved.text
    await stack.engine.run("api/hello")  # version 4: not the first change's
    report = await api.post(
        "/api/proposals/suggest", json={"playbook": "api/hello"}, headers=stack.auth("operator")
    )
    [evaluated] = report.json()["evaluated"]
    assert evaluated["id"] == pid
    assert evaluated["evaluation"]["verdict"] == "inconclusive"
    assert evaluated["evaluation"]["window"]["versions"] == [2, 3]

    html = unescape((await api.get(f"/review/proposals/{pid}")).text)
    assert _row(html, "v2-v3 (after)")[1] == "3"
    assert f"the span ended when proposal {second} (timeout) was applied as version 4" in html
    heading = re.search(r'<h3 id="verdict">(.*?)</h3>', html, re.S)
    assert heading is not None
    assert re.sub(r"<[^>]+>", "", heading.group(1)) == (
        "Measured effect: inconclusive: too few executions ran while the change was in force"
    )
    assert '<span class="verdict inconclusive">' in heading.group(1)
    assert "fewer than the 5 needed to judge it" in html  # the evaluation's summary
    # The second change's own page counts only its own version.
    other = unescape((await api.get(f"/review/proposals/{second}")).text)
    assert _row(other, "v3 (before)")[1] == "2" and _row(other, "v4 (after)")[1] == "1"
