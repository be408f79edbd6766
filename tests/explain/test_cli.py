"""`noetl-agent explain` and `feedback` as real processes: on the embedded stack, then the
same answers through a real server process over the same home."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import NOETL_AGENT, CliResult, cli, home  # noqa: F401
from tests.explain.conftest import CREDENTIALS
from tests.explain.playbooks import API_KEY, ENRICH_BROKEN, MERGE_CONTACTS, SECRET, WORKS
from tests.learning.test_cli import _free_port, _healthy, _until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
SAME = ("failed", "summary", "root_cause", "causes", "failure", "similar", "suggested_fixes")


def _write(folder: Path) -> dict[str, Path]:
    folder.mkdir(exist_ok=True)
    files = {}
    for name, content in {"enrich": ENRICH_BROKEN, "merge": MERGE_CONTACTS, "ok": WORKS}.items():
        files[name] = folder / f"{name}.yaml"
        files[name].write_text(content)
    return files


def _run(cli: Callable[..., CliResult], path: Path, code: int) -> str:  # noqa: F811
    result = cli("run", path, "--json")
    assert result.returncode == code, result.describe()
    return str(result.json()["execution_id"])


def _token(home: Path) -> str:  # noqa: F811
    created = subprocess.run(
        [NOETL_AGENT, "tokens", "create", "--name", "ops", "--kind", "human", "--role", "operator"],
        env=dict(os.environ, NOETL_HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


def test_explain_and_feedback_locally_and_through_a_server(
    cli: Callable[..., CliResult],  # noqa: F811
    home: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in CREDENTIALS.items():  # the processes know the secret as a credential
        monkeypatch.setenv(name, value)
    files = _write(tmp_path / "playbooks")
    earlier = [_run(cli, files["enrich"], 1), _run(cli, files["enrich"], 1)]
    failed = _run(cli, files["merge"], 1)
    done = _run(cli, files["ok"], 0)

    local = cli("explain", failed, "--json", timeout=180)
    assert local.returncode == 0, local.describe()
    answer: dict[str, Any] = local.json()
    assert answer["root_cause"]["id"] == "input_shape"
    assert {item["execution_id"] for item in answer["similar"][:2]} == set(earlier)
    assert SECRET not in local.stdout and API_KEY not in local.stdout

    text = cli("explain", failed, timeout=180)
    assert text.returncode == 0, text.describe()
    for words in ("Likely causes", "input_shape", "Similar past failures", "Suggested fixes"):
        assert words in text.stdout, text.stdout
    assert SECRET not in text.stdout

    plain = cli("explain", done)
    assert plain.returncode == 0, plain.describe()
    assert "did not fail" in plain.stdout

    unknown = cli("explain", "no-such-execution")
    assert unknown.returncode == 1
    assert "not found" in unknown.stderr and "Traceback" not in unknown.stderr

    token = _token(home)
    url = f"http://127.0.0.1:{_free_port()}"
    log = tmp_path / "server.log"
    env = dict(os.environ, NOETL_HOME=str(home), NOETL_INDEXER="on")
    with log.open("w") as sink:
        server = subprocess.Popen(
            [NOETL_AGENT, "server", "--port", url.rsplit(":", 1)[1]],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            text=True,
        )
    try:
        _until(lambda: _healthy(url, server, log), "the server did not answer")
        remote = cli("explain", failed, "--json", "--server", url, "--token", token, timeout=180)
        assert remote.returncode == 0, remote.describe()
        for key in SAME:
            assert remote.json()[key] == answer[key], key

        rated = cli(
            "feedback",
            failed,
            "--helpful",
            "--comment",
            "the email key was missing",
            "--server",
            url,
            "--token",
            token,
            "--json",
            timeout=180,
        )
        assert rated.returncode == 0, rated.describe()
        assert rated.json()["cause"] == "input_shape"
        assert rated.json()["principal"] == "ops"
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "Traceback" not in log.read_text()

    again = cli("feedback", failed, "--not-helpful", "--cause", "bad_value", timeout=180)
    assert again.returncode == 0, again.describe()
    assert "not helpful (cause bad_value)" in again.stdout

    shown = cli("explain", failed, "--json", timeout=180)
    feedback = shown.json()["feedback"]
    assert [(f["helpful"], f["principal"], f["cause"]) for f in feedback] == [
        (True, "ops", "input_shape"),
        (False, "local-admin", "bad_value"),
    ]
    assert json.dumps(feedback).count("the email key was missing") == 1

    needs = cli("feedback", failed)
    assert needs.returncode != 0
    assert "--helpful" in needs.stderr
