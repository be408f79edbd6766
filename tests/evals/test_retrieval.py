"""The retrieval eval: its keyword baseline, its metrics, and a real run of it."""

from __future__ import annotations

import pytest

from evals.retrieval import run
from evals.retrieval.bm25 import BM25, tokens
from evals.retrieval.corpus import FAMILIES, original, playbook
from evals.retrieval.run import Scores


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
    paths = [variant.path for family in FAMILIES for variant in family.variants]
    assert len(paths) == len(set(paths)) == 4 * len(FAMILIES)
    assert all(len(family.queries) == 3 for family in FAMILIES)
    assert "def main():" in playbook(FAMILIES[0].variants[0])


def test_the_original_corpus_is_the_first_three_variants_and_two_queries() -> None:
    first = original(FAMILIES)
    assert [family.name for family in first] == [family.name for family in FAMILIES]
    for before, now in zip(first, FAMILIES, strict=True):
        assert before.variants == now.variants[:3] and before.queries == now.queries[:2]


@pytest.mark.slow
def test_semantic_search_beats_keywords_on_the_real_corpus() -> None:
    report = run.run()

    assert report.executions == 4 * len(FAMILIES)
    assert report.variants == 4
    for task in ("describe", "similar"):
        semantic, keyword = report.tasks[task]["semantic"], report.tasks[task]["bm25"]
        assert semantic["recall@5"] > keyword["recall@5"], task
        assert semantic["hit@1"] > keyword["hit@1"], task
    assert report.tasks["describe"]["semantic"]["hit@1"] >= 0.8
    section = run.markdown(report)
    assert section.startswith(run.MARK_START) and section.endswith(run.MARK_END)
