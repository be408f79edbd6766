"""The retrieval eval: its keyword baseline, its metrics, and a real run of it."""

from __future__ import annotations

import socket

import pytest

from evals.retrieval import run
from evals.retrieval.bm25 import BM25, tokens
from evals.retrieval.corpus import FAMILIES, answer, playbook
from evals.retrieval.raised import RAISED_FAMILIES
from evals.retrieval.run import Scores
from tests.conftest import require_service


def test_bm25_ranks_documents_sharing_rare_query_words_first() -> None:
    index = BM25(
        [
            "connection refused by the database server",
            "the file was not found",
            "the the the the server",
            "permission denied writing the file",
        ]
    )
    assert index.rank("database refused")[0] == 0
    assert index.rank("file permission")[0] == 3
    assert index.score("nothing matches", 1) == 0.0
    assert tokens("KeyError: 'customer_id'") == ["keyerror", "customer", "id"]


def test_scores_hit_recall_and_reciprocal_rank() -> None:
    scores = Scores()
    scores.add(["a", "x", "b"], {"a", "b"})  # hit, both found, first at 1
    scores.add(["x", "y", "b", "z", "w", "a"], {"a", "b"})  # a is 6th: outside the top 5
    assert scores.summary() == {"queries": 2, "hit@1": 0.5, "recall@5": 0.75, "mrr@5": 0.667}


def test_every_variant_is_a_separate_playbook() -> None:
    for families, causes in ((FAMILIES, 10), (RAISED_FAMILIES, 12)):
        paths = [variant.path for family in families for variant in family.variants]
        assert len(families) == causes
        assert len(paths) == len(set(paths)) == 4 * causes
        assert all(len(family.queries) == 3 for family in families)
    server = "http://127.0.0.1:8123"
    http = playbook(FAMILIES[0].variants[0], server)
    assert f"url: {server}/v1/inventory" in http and "$SERVER" not in http
    assert "def main():" in playbook(RAISED_FAMILIES[0].variants[0])


def test_the_test_server_answers_each_route_as_its_cause() -> None:
    assert answer("GET", "/v1/inventory", None)[0] == 503
    status, headers, _, _ = answer("GET", "/v1/geocode", None)
    assert (status, headers) == (429, {"Retry-After": "30"})
    assert answer("GET", "/v1/forecast", None)[3] > 1.0  # slower than the steps wait
    assert answer("GET", "/nowhere", None)[0] == 404


def _postgres_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.slow
def test_semantic_search_beats_keywords_on_the_real_corpus() -> None:
    require_service(_postgres_up(), "PostgreSQL at 127.0.0.1:5432")
    report = run.run(FAMILIES)

    assert report.executions == 4 * len(FAMILIES)
    assert report.variants == 4
    for task in ("describe", "similar"):
        semantic, keyword = report.tasks[task]["semantic"], report.tasks[task]["bm25"]
        assert semantic["recall@5"] > keyword["recall@5"], task
        assert semantic["hit@1"] > keyword["hit@1"], task
    assert report.tasks["similar"]["semantic"]["recall@5"] >= 0.9
    assert report.tasks["describe"]["semantic"]["hit@1"] >= 0.8
    section = run.markdown({"real": report})
    assert section.startswith(run.MARK_START) and section.endswith(run.MARK_END)
    assert "HTTP 503" in section
