"""A learner's proposal on the page: measured executions, its evidence with intervals,
the expected effect, and why no similar failures are listed."""

from __future__ import annotations

import re
from html import unescape

import pytest

from noetl_agent.review.evidence import flatten
from tests.api.conftest import register
from tests.flaky_service import alternating_service
from tests.review.conftest import login

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
        for _ in range(20):
            started = await api.post(
                "/api/execute",
                json={"path": path, "workload": {"base": base}},
                headers=stack.auth("admin"),
            )
            await stack.engine.wait(started.json()["execution_id"], timeout=30)
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
