"""`noetl-agent demo --quick` end to end, as a user runs it: in a fresh NOETL_HOME, through
the installed console script, its report read from the JSON last line."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.processes import NOETL_AGENT, stop

pytestmark = pytest.mark.slow

TIMEOUT_S = 170
PRIORITY = ("retry_remove", "retry", "pool", "timeout")
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_PROPOSAL = re.compile(r"^\s+(p-[0-9a-f]{12}-\d+)\s+(\w+) (\S+) v\d+ step")


def _env(home: Path) -> dict[str, str]:
    return dict(
        os.environ, NOETL_HOME=str(home), NOETL_INDEXER="off", PYTHONUNBUFFERED="1", COLUMNS="120"
    )


def _demo(home: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    done = subprocess.run(
        [NOETL_AGENT, "demo", "--quick", "--json", *args],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output, output
    return done, json.loads(done.stdout.strip().splitlines()[-1])


def _items(report: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = report["proposals"]["items"]
    return items


def test_auto_approved_demo_lowers_the_failure_rate(tmp_path: Path) -> None:
    started = time.monotonic()
    done, report = _demo(tmp_path, "--auto-approve-as-demo-reviewer")
    assert time.monotonic() - started < 90

    rates = report["failure_rate"]
    assert rates["after"] < rates["before"], rates
    prices = next(p for p in report["playbooks"] if p["path"] == "demo/price_list")
    assert prices["after"]["failure_rate"] < prices["before"]["failure_rate"]
    assert prices["after"]["version"] > prices["before"]["version"]

    kinds = {item["kind"] for item in _items(report)}
    assert {"retry", "retry_remove", "pool"} <= kinds, kinds
    approved = [item for item in _items(report) if item["decided_by"]]
    assert len(approved) == report["proposals"]["approved"] == 3
    for item in approved:
        assert item["status"] == "applied"
        assert item["decided_by"] == [{"name": "demo-reviewer", "kind": "human", "approved": True}]
        assert item["proposed_by"].startswith("learner:")  # the reviewer is not the proposer
    verdicts = {e["playbook"]: e["verdict"] for e in report["evaluations"]}
    assert verdicts["demo/price_list"] == "better"
    assert verdicts["demo/render_report"] == "better"  # faster and cheaper on pool large

    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/review/", report["review_url"])
    assert report["review_url"] in done.stdout
    assert "search index: off (NOETL_INDEXER=off)" in done.stdout
    assert "explanation of" in done.stdout
    assert Path(report["home"]).parent == tmp_path / "demo"
    assert (tmp_path / "demo" / "latest").resolve() == Path(report["home"]).resolve()


def test_without_the_flag_and_no_wait_the_proposals_stay_pending(tmp_path: Path) -> None:
    done, report = _demo(tmp_path, "--wait", "0")
    proposals = report["proposals"]
    assert proposals["raised"] >= 3
    assert proposals["pending"] == proposals["raised"]
    assert proposals["approved"] == 0
    assert all(not item["decided_by"] for item in _items(report))
    assert all(p["after"] is None for p in report["playbooks"])
    assert report["evaluations"] == []
    assert "nothing was approved" in done.stdout

    # A second demo in the same NOETL_HOME gets a home of its own and tells the same story.
    _, again = _demo(tmp_path, "--wait", "0")
    assert again["home"] != report["home"]
    assert again["proposals"]["raised"] == proposals["raised"]


def _reader(stream: IO[str], lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


def _wait_for(lines: list[str], pattern: str, process: subprocess.Popen[str]) -> re.Match[str]:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        for line in list(lines):
            found = re.search(pattern, line)
            if found:
                return found
        assert process.poll() is None, "".join(lines)
        time.sleep(0.1)
    raise AssertionError(f"no line matching {pattern!r}:\n{''.join(lines)}")


def test_a_person_decides_on_the_review_page_and_the_demo_measures_it(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [NOETL_AGENT, "demo", "--quick", "--json", "--wait", "120"],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert process.stdout is not None
    reader = threading.Thread(target=_reader, args=(process.stdout, lines), daemon=True)
    reader.start()
    try:
        url = _wait_for(lines, r"review page: (http://\S+/review/)", process).group(1)
        token = _wait_for(lines, r"^\s+(noetl_\S+)\s*$", process).group(1)
        _wait_for(lines, r"waiting up to", process)
        by_playbook: dict[str, tuple[str, str]] = {}
        for line in lines:
            found = _PROPOSAL.match(line)
            if found:
                pid, kind, playbook = found.groups()
                known = by_playbook.get(playbook)
                if kind in PRIORITY and (
                    known is None or PRIORITY.index(kind) < PRIORITY.index(known[1])
                ):
                    by_playbook[playbook] = (pid, kind)
        assert set(by_playbook) == {"demo/price_list", "demo/user_profile", "demo/render_report"}

        base = url.removesuffix("/review/")
        with httpx.Client(base_url=base, timeout=30) as browser:
            form = browser.get("/review/login")
            csrf = _CSRF.search(form.text)
            assert csrf, form.text
            answer = browser.post("/review/login", data={"csrf": csrf.group(1), "token": token})
            assert answer.status_code == 303, answer.text
            for pid, _ in by_playbook.values():
                page = browser.get(f"/review/proposals/{pid}")
                assert page.status_code == 200, page.text
                csrf = _CSRF.search(page.text)
                assert csrf, page.text
                decided = browser.post(
                    f"/review/proposals/{pid}/decision",
                    data={"csrf": csrf.group(1), "decision": "approve", "comment": "looks right"},
                )
                assert decided.status_code == 303, decided.text
        assert process.wait(timeout=TIMEOUT_S) == 0, "".join(lines)
    finally:
        stop(process)
        reader.join(timeout=5)
    output = "".join(lines)
    assert "stopped waiting: nothing is pending any more" in output
    report = json.loads(output.strip().splitlines()[-1])
    assert report["proposals"]["approved"] == 3
    assert report["failure_rate"]["after"] < report["failure_rate"]["before"]
    approvers = {d["name"] for item in _items(report) for d in item["decided_by"]}
    assert approvers == {"demo-reviewer"}


def test_a_taken_port_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [NOETL_AGENT, "demo", "--quick", "--port", str(port)],
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"cannot serve the review page on port {port}" in done.stderr
    assert "--port 0" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "demo").exists()
