"""A learner's proposal carries the most similar past failures from the search index as
evidence when the stack has one (indexing on), found by the error it is about."""

from __future__ import annotations

from pathlib import Path

import pytest

from learning.embedder import shared_embedder
from learning.vector_store import IndexLocation
from noetl_agent.history import History
from noetl_agent.policy_settings import PolicySettings
from noetl_agent.proposals import ProposalService
from tests.policy.conftest import FLAKY_HTTP, OPERATOR

pytestmark = pytest.mark.slow


async def test_evidence_names_similar_past_failures(
    engine, flaky_service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("NOETL_INDEXER", "on")
    shared_embedder().embed(["warm up"])  # the bundled model, loaded once per process
    history = History(engine.events, engine.catalog, IndexLocation.local(tmp_path / "qdrant"))
    service = ProposalService(engine, history=history, settings=PolicySettings())
    await engine.register(FLAKY_HTTP)
    for _ in range(20):
        await engine.run("policy/flakyhttp", workload={"base": flaky_service})

    report = await service.suggest(OPERATOR, "policy/flakyhttp")
    [proposal] = report.proposed
    similar = proposal["evidence"]["similar_failures"]
    assert similar["available"] is True, similar
    assert "http_503" in similar["query"]
    assert 1 <= len(similar["hits"]) <= 3
    for hit in similar["hits"]:
        assert hit["kind"] == "failure"
        assert hit["playbook_path"] == "policy/flakyhttp"
