"""The indexer over real event stores (SQLite and PostgreSQL), the real model and a real
local Qdrant: what becomes a document, incremental and idempotent passes, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.adapters.credential_store import CredentialKey, EncryptedCredentialStore
from learning.embedder import SentenceEmbedder
from learning.errors import SecretsUnavailable
from learning.indexer import Indexer
from learning.search import Searcher
from learning.vector_store import KINDS, IndexLocation, VectorStore
from tests.learning import corpus
from tests.learning.conftest import Stack, open_stack


def _counts(store: VectorStore) -> dict[str, int]:
    return {kind: store.count(kind) for kind in KINDS}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_indexes_each_kind_once_and_only_what_is_new(
    backend: str, tmp_path: Path, store: VectorStore, embedder: SentenceEmbedder
) -> None:
    async with open_stack(backend, tmp_path) as stack:
        failed = await stack.run(corpus.DB_DOWN)
        retried = await stack.run(corpus.RETRIED, {"counter": str(tmp_path / "counter")})
        indexer = Indexer(stack.engine.events, stack.engine.catalog, store, embedder=embedder)

        first = await indexer.run_once()

        # 2 playbooks; DB_DOWN: steps start+work, 1 final failure, 1 execution;
        # RETRIED: step extract, 1 retried attempt, 1 execution.
        assert _counts(store) == {"failures": 2, "steps": 3, "executions": 2, "playbooks": 2}
        assert first.documents == 9
        assert first.by_kind == {"playbooks": 2, "steps": 3, "failures": 2, "executions": 2}

        again = await indexer.run_once()
        assert (again.events, again.documents) == (0, 0)
        assert again.position == first.position

        # A new indexer (another process) resumes from the stored position.
        later = await stack.run(corpus.MISSING_KEY)
        resumed = Indexer(stack.engine.events, stack.engine.catalog, store, embedder=embedder)
        third = await resumed.run_once()
        assert third.by_kind == {"playbooks": 1, "steps": 2, "failures": 1, "executions": 1}
        assert _counts(store)["executions"] == 3

        # Re-reading positions already indexed (as on PostgreSQL) embeds nothing again.
        overlapping = Indexer(
            stack.engine.events, stack.engine.catalog, store, embedder=embedder, overlap=1000
        )
        reread = await overlapping.run_once()
        assert reread.events > 0
        assert (reread.documents, reread.skipped) == (0, 14)
        assert _counts(store)["executions"] == 3

    searcher = Searcher(store, embedder)
    failures = {hit.execution_id: hit for hit in searcher.search_history("error", "failures")}
    assert set(failures) == {failed, retried, later}
    assert failures[failed].payload["final"] is True
    assert failures[retried].payload["final"] is False  # the attempt before the retry
    assert "TimeoutError" in failures[retried].text
    assert failures[later].step == "work"
    assert failures[later].payload["tool_kind"] == "python"


async def test_a_lost_position_repeats_no_embedding(
    stack: Stack, tmp_path: Path, embedder: SentenceEmbedder
) -> None:
    await stack.run(corpus.AUTH)
    location = IndexLocation.local(tmp_path / "qdrant", prefix="lost")
    store = VectorStore.open(location)
    indexer = Indexer(stack.engine.events, stack.engine.catalog, store, embedder=embedder, page=4)
    first = await indexer.run_once()
    assert first.documents == 5  # read in pages of 4 events
    before = _counts(store)

    store.set_cursor("events", 0)  # as if the position had never been saved
    again = await indexer.run_once()

    assert again.documents == 0
    assert again.skipped == first.documents
    assert _counts(store) == before


async def test_a_secret_in_an_error_never_reaches_qdrant(
    stack: Stack, tmp_path: Path, embedder: SentenceEmbedder
) -> None:
    secret = "Tr0ub4dor-and-3-horses"
    credentials = EncryptedCredentialStore.sqlite(
        tmp_path / "creds.db", CredentialKey.from_environment(tmp_path)
    )
    await credentials.set("warehouse", "postgres", {"user": "etl", "password": secret})
    # The script quotes the password itself: the engine never resolved it, so the event
    # log holds it in clear; only the indexer can mask it.
    leaky = corpus.failing(
        "etl/leaky",
        f"authentication failed for user etl with password {secret}",
        error="PermissionError",
        desc=f"connects with {secret}",
    )
    await stack.run(leaky, {"dsn": f"postgresql://etl:{secret}@db/warehouse"})
    folder = tmp_path / "qdrant-secret"
    store = VectorStore.open(IndexLocation.local(folder))
    indexer = Indexer(
        stack.engine.events,
        stack.engine.catalog,
        store,
        embedder=embedder,
        credentials=[credentials],
    )

    report = await indexer.run_once()

    assert report.documents > 0
    for kind in KINDS:
        for point in store.scan(kind):
            assert secret not in repr(point.payload)
    for path in folder.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    hit = Searcher(store, embedder).search_history("authentication failed", "failures")[0]
    assert "password ***" in hit.text


async def test_a_credential_that_cannot_be_read_stops_indexing(
    stack: Stack, tmp_path: Path, embedder: SentenceEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOETL_CREDENTIAL_KEY", raising=False)  # the key files decide
    (tmp_path / "right").mkdir()
    (tmp_path / "wrong").mkdir()
    stored = EncryptedCredentialStore.sqlite(
        tmp_path / "creds.db", CredentialKey.from_environment(tmp_path / "right")
    )
    await stored.set("warehouse", "postgres", {"password": "s3cret-value"})
    unreadable = EncryptedCredentialStore.sqlite(
        tmp_path / "creds.db", CredentialKey.from_environment(tmp_path / "wrong")
    )
    await stack.run(corpus.DIVIDE)
    store = VectorStore.open(IndexLocation.local(tmp_path / "qdrant-locked"))
    indexer = Indexer(
        stack.engine.events,
        stack.engine.catalog,
        store,
        embedder=embedder,
        credentials=[unreadable],
    )

    with pytest.raises(SecretsUnavailable, match="cannot read credential 'warehouse'"):
        await indexer.run_once()

    assert _counts(store) == dict.fromkeys(KINDS, 0)
    assert store.cursor("events") == 0
