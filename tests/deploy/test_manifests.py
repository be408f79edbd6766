"""The deployment files parse, name what they need, and call commands that exist."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.main import get_command

from noetl_agent.cli.app import app

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _cli_commands() -> set[str]:
    root = get_command(app)
    names: set[str] = set()
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        names.add(name)
        for sub in getattr(command, "commands", {}):
            names.add(f"{name} {sub}")
    return names


def _invocation(args: list[str]) -> str:
    words = [a for a in args if not a.startswith("-")]
    joined = " ".join(words[:2])
    return joined if joined in _cli_commands() else words[0]


def test_compose_has_the_distributed_stack() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services: dict[str, Any] = compose["services"]
    assert {"postgres", "nats", "qdrant", "clickhouse", "server", "worker"} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, name
    assert services["worker"]["deploy"]["replicas"] == 2
    commands = _cli_commands()
    for name in ("server", "worker", "migrate"):
        assert _invocation(services[name]["command"]) in commands, name
    for name in ("server", "worker", "migrate"):
        environment = services[name]["environment"]
        assert "NOETL_DATABASE_URL" in environment and "NOETL_NATS_URL" in environment


def test_nats_fsyncs_every_write() -> None:
    text = (DEPLOY / "nats.conf").read_text()
    assert "jetstream" in text and "sync_interval: always" in text


def test_dockerfile_copies_existing_sources_and_runs_the_cli() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (DEPLOY.parent / source).exists(), source
    assert 'ENTRYPOINT ["noetl-agent"]' in text


def _k8s_documents() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("TOOL MISSING: kubectl (renders deploy/k8s with `kubectl kustomize`)")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "k8s")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def test_kubernetes_manifests_render_and_are_complete() -> None:
    documents = _k8s_documents()
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in documents}
    assert ("Deployment", "noetl-agent-server") in kinds
    assert ("Deployment", "noetl-agent-worker-cpu") in kinds
    assert ("Job", "noetl-agent-migrate") in kinds
    commands = _cli_commands()
    for doc in documents:
        assert doc["apiVersion"] and doc["metadata"]["name"]
        if doc["kind"] in ("Deployment", "Job"):
            assert doc["metadata"]["namespace"] == "noetl-agent"
            for container in doc["spec"]["template"]["spec"]["containers"]:
                assert container["image"]
                assert _invocation(container["args"]) in commands, container["args"]
