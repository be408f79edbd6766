"""`noetl-agent generate` and `noetl-agent promote`, in process: the draft is written and
reported, the exit code says whether it validates, and a gated draft runs only after a
human promotes it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from noetl_agent.cli.app import app
from tests.generation.conftest import Service

Invoke = Callable[..., Result]


@pytest.fixture
def invoke(tmp_path: Path) -> Invoke:
    runner = CliRunner()
    env = {
        "NOETL_HOME": str(tmp_path / "home"),
        "NOETL_SERVER_URL": "",
        "NOETL_TOKEN": "",
        "NOETL_LLM_MODEL": "",
        "COLUMNS": "200",
    }

    def call(*args: str) -> Result:
        return runner.invoke(app, list(args), env=env)

    return call


def test_generate_writes_the_draft_and_a_gated_draft_waits_for_promotion(
    invoke: Invoke, service: Service, tmp_path: Path
) -> None:
    draft = tmp_path / "draft.yaml"
    made = invoke(
        "generate",
        f"Fetch {service.url}/items and compute the average price",
        "-o",
        str(draft),
        "--json",
    )
    assert made.exit_code == 0, made.output
    report: dict[str, Any] = json.loads(made.stdout.strip().splitlines()[-1])
    assert report["valid"] and report["dry_run"]["passed"]
    assert report["gate"] == {
        "gated": True,
        "code_tools": ["python"],
        "fingerprint": report["gate"]["fingerprint"],
    }
    assert yaml.safe_load(draft.read_text())["metadata"]["path"] == report["path"]
    assert service.requests == []  # the dry run reached nothing

    refused = invoke("run", str(draft))
    assert refused.exit_code == 1
    assert "no human operator has promoted it" in refused.stderr
    assert service.requests == []

    by_agent = invoke("--as-agent", "promote", str(draft))
    assert by_agent.exit_code == 1 and "only a human operator" in by_agent.stderr

    promoted = invoke("promote", str(draft), "--comment", "reviewed")
    assert promoted.exit_code == 0, promoted.output
    assert "may run live" in promoted.stdout

    ran = invoke("run", str(draft), "--json")
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout.strip().splitlines()[-1])["result"]["average_price"] == 6.0
    assert service.requests == ["GET /items"]


def test_generate_prints_the_draft_and_the_report(invoke: Invoke) -> None:
    made = invoke(
        "generate",
        "Every day at 9am fetch https://status.example.com/now, retrying 4 times",
        "--register",
    )
    assert made.exit_code == 0, made.output
    assert "kind: http" in made.stdout and "attempts: 4" in made.stdout
    assert "valid" in made.stderr and "dry run passed" in made.stderr
    assert "not mapped" in made.stderr and "9am" in made.stderr
    assert "registered generated/" in made.stderr
    listed = invoke("catalog", "list", "--json")
    assert any(entry["path"].startswith("generated/") for entry in json.loads(listed.stdout))


def test_generate_exits_2_when_the_draft_is_invalid(invoke: Invoke, tmp_path: Path) -> None:
    draft = tmp_path / "nothing.yaml"
    made = invoke("generate", "Sing a song about the sea", "-o", str(draft))
    assert made.exit_code == 2
    assert "invalid" in made.stderr and "nothing in the description" in made.stderr
    assert draft.exists()


def test_generate_refuses_an_unknown_tool_kind(invoke: Invoke) -> None:
    made = invoke("generate", "Fetch https://x.example.com/a", "--kind", "telnet")
    assert made.exit_code == 2 and "unknown tool kind" in made.stderr
