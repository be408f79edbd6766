"""Semantic search over a small real corpus: playbooks failing in distinct ways, run on
the embedded engine, indexed with the real model into a real local Qdrant."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from learning.clusters import error_clusters
from learning.embedder import SentenceEmbedder
from learning.errors import InvalidQuery
from learning.indexer import Indexer
from learning.search import MIN_CENTRED, Searcher
from learning.vector_store import IndexLocation, VectorStore
from tests.learning import corpus
from tests.learning.conftest import open_stack

PLAYBOOKS = {
    "db_down": corpus.DB_DOWN,
    "db_down_elsewhere": corpus.DB_DOWN_ELSEWHERE,
    "missing_key": corpus.MISSING_KEY,
    "auth": corpus.AUTH,
    "no_file": corpus.NO_FILE,
    "divide": corpus.DIVIDE,
    "sales": corpus.SALES_REPORT,
    "thumbnails": corpus.THUMBNAILS,
}


@dataclass
class Corpus:
    searcher: Searcher
    store: VectorStore
    runs: dict[str, list[str]]  # playbook key → execution ids, oldest first


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceEmbedder) -> Corpus:
    root = tmp_path_factory.mktemp("search")

    async def build() -> tuple[VectorStore, dict[str, list[str]]]:
        async with open_stack("sqlite", root) as stack:
            runs: dict[str, list[str]] = {}
            for key, content in PLAYBOOKS.items():
                times = 2 if key in ("db_down", "missing_key") else 1
                runs[key] = [await stack.run(content) for _ in range(times)]
            store = VectorStore.open(IndexLocation.local(root / "qdrant"))
            indexer = Indexer(stack.engine.events, stack.engine.catalog, store, embedder=embedder)
            await indexer.run_once()
            return store, runs

    store, runs = asyncio.run(build())
    return Corpus(Searcher(store, embedder), store, runs)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("the database refused the connection", {"etl/load_orders", "etl/sync_customers"}),
        ("missing key customer_id in a record", {"api/enrich_users"}),
        ("authentication token rejected, not authorised", {"api/fetch_invoices"}),
        ("input csv file does not exist", {"files/import_sales"}),
        ("divided by zero while computing", {"reports/margins"}),
    ],
)
def test_a_failure_is_found_by_what_it_means(
    indexed: Corpus, query: str, expected: set[str]
) -> None:
    hits = indexed.searcher.search_history(query, kind="failures", k=3)
    assert hits[0].playbook_path in expected
    assert hits[0].kind == "failure"
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


def test_hits_link_back_to_their_execution_and_event(indexed: Corpus) -> None:
    hit = indexed.searcher.search_history("division by zero", kind="failures", k=1)[0]
    assert hit.execution_id == indexed.runs["divide"][0]
    assert hit.step == "work"
    data = hit.to_dict()
    assert data["links"]["execution"] == f"/api/executions/{hit.execution_id}"
    assert data["links"]["event"].endswith(f"after_seq={data['seq'] - 1}")
    assert set(data) >= {"kind", "playbook_path", "execution_id", "step", "score", "text"}


def test_all_kinds_are_searched_unless_one_is_named(indexed: Corpus) -> None:
    kinds = {hit.kind for hit in indexed.searcher.search_history("orders warehouse", k=20)}
    assert kinds == {"failure", "step", "execution", "playbook"}
    steps = indexed.searcher.search_history("orders warehouse", kind="step", k=5)
    assert {hit.kind for hit in steps} == {"step"}


def test_filters_keep_only_matching_documents(indexed: Corpus) -> None:
    hits = indexed.searcher.search_history(
        "connection refused", filters={"playbook_path": "reports/margins"}, k=10
    )
    assert hits
    assert {hit.playbook_path for hit in hits} == {"reports/margins"}


def test_similar_failures_of_an_execution_are_other_executions(indexed: Corpus) -> None:
    first, second = indexed.runs["db_down"]
    hits = indexed.searcher.similar_failures(execution_id=second, k=3)
    assert second not in {hit.execution_id for hit in hits}
    assert hits[0].execution_id == first
    assert hits[1].playbook_path == "etl/sync_customers"


def test_similar_failures_of_an_error_text(indexed: Corpus) -> None:
    hits = indexed.searcher.similar_failures(text="KeyError: 'account_id'", k=2)
    assert hits[0].playbook_path == "api/enrich_users"
    # One hit per failing step run: both runs of the playbook, not the same one twice.
    assert len({hit.execution_id for hit in hits}) == 2


def test_similar_failures_of_an_execution_that_did_not_fail(indexed: Corpus) -> None:
    with pytest.raises(InvalidQuery, match="no indexed failure"):
        indexed.searcher.similar_failures(execution_id=indexed.runs["sales"][0])


def test_similar_playbooks_by_description(indexed: Corpus) -> None:
    hits = indexed.searcher.similar_playbooks("email a weekly summary of sales to managers", k=3)
    assert hits[0].playbook_path == "reports/weekly_sales"
    assert hits[0].execution_id is None
    photo = indexed.searcher.similar_playbooks("make small versions of images", k=1)
    assert photo[0].playbook_path == "media/thumbnails"


@pytest.mark.parametrize(
    ("kind", "filters", "text", "message"),
    [
        ("logs", None, "x", "unknown kind 'logs'"),
        (None, {"colour": "red"}, "x", "unknown filter colour"),
        (None, None, "   ", "the search text is empty"),
    ],
)
def test_bad_queries_say_what_to_fix(
    indexed: Corpus, kind: str | None, filters: dict[str, str] | None, text: str, message: str
) -> None:
    with pytest.raises(InvalidQuery, match=message):
        indexed.searcher.search_history(text, kind=kind, filters=filters)


def test_error_clusters_group_failures_by_meaning_across_playbooks(indexed: Corpus) -> None:
    clusters = error_clusters(indexed.store)
    by_playbooks = {frozenset(cluster.playbooks): cluster for cluster in clusters}
    database = by_playbooks[frozenset({"etl/load_orders", "etl/sync_customers"})]
    assert database.count == 3
    assert database.playbooks == {"etl/load_orders": 2, "etl/sync_customers": 1}
    assert "onnection" in database.representative
    assert by_playbooks[frozenset({"api/enrich_users"})].count == 2
    assert sum(cluster.count for cluster in clusters) == 8  # every final failure, once
    assert clusters[0] is database  # largest first


def test_error_clusters_of_one_playbook(indexed: Corpus) -> None:
    clusters = error_clusters(indexed.store, playbook="api/enrich_users")
    assert [cluster.count for cluster in clusters] == [2]
    assert clusters[0].executions == list(reversed(indexed.runs["missing_key"]))


def test_an_empty_index_answers_with_nothing(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    empty = Searcher(VectorStore.open(IndexLocation.local(tmp_path / "empty")), embedder)
    assert empty.search_history("anything") == []
    assert error_clusters(empty.store) == []


def _failures(store: VectorStore, messages: list[list[float]]) -> None:
    from learning.vector_store import point_id

    store.upsert(
        "failures",
        [
            (
                point_id("failures", f"run{n}"),
                {"text": vector, "message": vector},
                {"kind": "failure", "execution_id": f"run{n}", "final": True, "seq": 3},
            )
            for n, vector in enumerate(messages)
        ],
    )


@pytest.mark.parametrize("count", [MIN_CENTRED - 1, MIN_CENTRED + 10])
def test_similar_failures_compare_what_is_particular_once_there_are_enough(
    tmp_path: Path, count: int
) -> None:
    """Below MIN_CENTRED failures, the plain cosine of message vectors ranks them; from
    then on the cosine after taking out the failures' mean, which a direction all
    messages share (here a strong one) would otherwise dominate."""
    import numpy as np

    rng = np.random.default_rng(count)
    shared = rng.normal(size=384)
    raw = rng.normal(size=(count, 384)) + 3 * shared
    vectors = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    store = VectorStore.open(IndexLocation.local(tmp_path / "qdrant"))
    _failures(store, vectors.tolist())

    hits = Searcher(store).similar_failures(execution_id="run0", k=5)

    if count >= MIN_CENTRED:
        centred = vectors - vectors.mean(axis=0)
        centred /= np.linalg.norm(centred, axis=1, keepdims=True)
        scores = centred[1:] @ centred[0]
    else:
        scores = vectors[1:] @ vectors[0]
    best = np.argsort(-scores)[:5]
    assert [hit.execution_id for hit in hits] == [f"run{i + 1}" for i in best]
    assert [hit.score for hit in hits] == pytest.approx(scores[best].tolist(), abs=1e-4)


def test_one_execution_with_many_failures_does_not_crowd_out_the_others(
    tmp_path: Path,
) -> None:
    import numpy as np

    from learning.vector_store import point_id

    rng = np.random.default_rng(3)
    shared = rng.normal(size=384)
    raw = rng.normal(size=(90, 384)) + shared
    raw[:60] += 4 * rng.normal(size=384)  # 60 failing iterations of one execution, alike
    vectors = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    store = VectorStore.open(IndexLocation.local(tmp_path / "qdrant"))
    store.upsert(
        "failures",
        [
            (
                point_id("failures", f"f{n}"),
                {"text": vector.tolist(), "message": vector.tolist()},
                {
                    "kind": "failure",
                    "execution_id": "loop" if n < 60 else f"run{n}",
                    "step_run_id": "each#1",
                    "iteration": n,
                    "final": True,
                    "seq": n,
                },
            )
            for n, vector in enumerate(vectors)
        ],
    )

    hits = Searcher(store).similar_failures(execution_id="loop", k=5)

    assert len(hits) == 5
    assert all(hit.execution_id != "loop" for hit in hits)
