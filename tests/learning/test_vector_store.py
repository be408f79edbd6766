"""The local index folder is one process's at a time: a second process is told why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from learning.errors import IndexUnavailable
from learning.vector_store import IndexLocation, VectorStore, point_id

HOLD = """
import sys, time
from qdrant_client import QdrantClient
client = QdrantClient(path=sys.argv[1])
print("held", flush=True)
sys.stdin.read()
"""


def test_a_folder_held_by_another_process_is_refused_with_a_hint(tmp_path: Path) -> None:
    folder = tmp_path / "qdrant"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(IndexUnavailable, match="in use by another process") as caught:
            VectorStore.open(IndexLocation.local(folder))
        assert "--server URL" in str(caught.value)
    finally:
        holder.communicate("", timeout=30)


def test_an_index_built_by_another_version_is_refused_with_a_fix(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient, models

    folder = tmp_path / "old"
    old = QdrantClient(path=str(folder))
    old.create_collection(
        "noetl_failures",
        vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE),
    )
    old.close()

    store = VectorStore.open(IndexLocation.local(folder))
    with pytest.raises(IndexUnavailable, match="built by another version") as caught:
        store.count("failures")
    assert "noetl-agent indexer --once" in str(caught.value)
    assert store.count("steps") == 0  # the other kinds are unaffected


def _unit(rng: Any, count: int) -> Any:
    import numpy as np

    vectors = rng.normal(size=(count, 384)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _fill(store: VectorStore, vectors: Any) -> None:
    items = [
        (
            point_id("failures", str(n)),
            {"text": row.tolist(), "message": row[::-1].tolist()},
            {"n": n, "step": f"s{n % 3}"},
        )
        for n, row in enumerate(vectors)
    ]
    store.upsert("failures", items)


def _public(store: VectorStore, vector: list[float], limit: int, **kwargs: Any) -> list[str]:
    """The ids the public ``query_points`` returns for the same query."""
    client = store._client
    response = client.query_points(
        store.collection("failures"), query=vector, limit=limit, with_payload=False, **kwargs
    )
    return [str(point.id) for point in response.points]


def test_local_queries_rank_as_the_public_api_before_and_after_reopening(tmp_path: Path) -> None:
    import numpy as np

    from learning.vector_store import _local_collection, close_all

    rng = np.random.default_rng(3)
    vectors = _unit(rng, 300)
    location = IndexLocation.local(tmp_path / "qdrant")
    store = VectorStore.open(location)
    _fill(store, vectors)
    queries = _unit(rng, 5)
    before = [store.query("failures", q.tolist(), limit=7) for q in queries]
    for query, points in zip(queries, before, strict=True):
        assert [p.id for p in points] == _public(store, query.tolist(), 7, using="text")
        expected = np.sort(vectors @ query)[::-1][:7]
        assert np.allclose([float(p.score or 0.0) for p in points], expected, atol=1e-5)
        assert all(set(p.payload) == {"n", "step"} for p in points)
    close_all()

    reopened = VectorStore.open(location)
    assert reopened.count("failures") == 300
    collection = _local_collection(reopened._client, reopened.collection("failures"))
    # Stored vectors are kept as the 32-bit floats the model makes (local mode loads 64-bit).
    assert {matrix.dtype for matrix in collection.vectors.values()} == {np.dtype(np.float32)}
    after = [reopened.query("failures", q.tolist(), limit=7) for q in queries]
    assert [[p.id for p in ps] for ps in after] == [[p.id for p in ps] for ps in before]
    # A filter and another named vector go through the same search.
    filtered = reopened.query(
        "failures", queries[0].tolist(), limit=4, match={"step": "s1"}, using="message"
    )
    assert len(filtered) == 4 and all(p.payload["step"] == "s1" for p in filtered)
    public_filter = models_filter({"step": "s1"})
    assert [p.id for p in filtered] == _public(
        reopened, queries[0].tolist(), 4, using="message", query_filter=public_filter
    )
    # New points land in the 32-bit matrix and are found.
    reopened.upsert(
        "failures",
        [
            (
                point_id("failures", "new"),
                {"text": queries[1].tolist(), "message": queries[1].tolist()},
                {"n": -1},
            )
        ],
    )
    assert reopened.query("failures", queries[1].tolist(), limit=1)[0].payload == {"n": -1}
    close_all()


def test_queries_use_the_public_api_where_local_mode_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    import learning.vector_store as vector_store

    rng = np.random.default_rng(5)
    store = VectorStore.open(IndexLocation.local(tmp_path / "qdrant"))
    _fill(store, _unit(rng, 50))
    query = _unit(rng, 1)[0].tolist()
    expected = [p.id for p in store.query("failures", query, limit=5)]
    monkeypatch.setattr(vector_store, "_searchable_types", {})
    monkeypatch.setattr(vector_store, "_SEARCH_PARAMETERS", ("query_vector", "not_a_parameter"))
    assert vector_store._LocalSearch.of(store._client, store.collection("failures")) is None
    assert [p.id for p in store.query("failures", query, limit=5)] == expected
    vector_store.close_all()


def models_filter(match: dict[str, Any]) -> Any:
    from learning.vector_store import _filter

    return _filter(match)


def test_the_mean_of_each_vector_is_kept_as_documents_come_and_are_replaced(
    tmp_path: Path,
) -> None:
    import numpy as np

    from learning.vector_store import close_all

    rng = np.random.default_rng(7)
    vectors = _unit(rng, 30)
    store = VectorStore.open(IndexLocation.local(tmp_path / "index"))
    assert store.centroid("failures", "message") is None
    _fill(store, vectors[:20])
    _fill(store, vectors[:30])  # 20 again (replaced by themselves) and 10 new
    mean, count = store.centroid("failures", "message") or ([], 0)
    assert count == 30
    assert np.allclose(mean, vectors[:, ::-1].mean(axis=0), atol=1e-5)

    replacement = _unit(rng, 1)[0]
    store.upsert(
        "failures",
        [
            (
                point_id("failures", "0"),
                {"text": replacement.tolist(), "message": replacement.tolist()},
                {},
            )
        ],
    )
    expected = np.vstack([replacement, vectors[1:, ::-1]]).mean(axis=0)
    mean, count = store.centroid("failures", "message") or ([], 0)
    assert count == 30 and np.allclose(mean, expected, atol=1e-5)
    close_all()

    reopened = VectorStore.open(IndexLocation.local(tmp_path / "index"))
    mean, count = reopened.centroid("failures", "message") or ([], 0)
    assert count == 30 and np.allclose(mean, expected, atol=1e-5)
    got = reopened.vectors("failures", [point_id("failures", "0"), "missing"], using="message")
    assert list(got) == [point_id("failures", "0")]
    assert np.allclose(got[point_id("failures", "0")], replacement, atol=1e-6)


def test_an_index_made_before_means_were_kept_gets_its_mean_from_its_vectors(
    tmp_path: Path,
) -> None:
    import numpy as np
    from qdrant_client import QdrantClient, models

    rng = np.random.default_rng(11)
    vectors = _unit(rng, 12)
    folder = tmp_path / "old"
    old = QdrantClient(path=str(folder))
    params = models.VectorParams(size=384, distance=models.Distance.DOT)
    old.create_collection("noetl_failures", vectors_config={"text": params, "message": params})
    old.upsert(
        "noetl_failures",
        points=[
            models.PointStruct(
                id=point_id("failures", str(n)),
                vector={"text": row.tolist(), "message": row.tolist()},
            )
            for n, row in enumerate(vectors)
        ],
    )
    old.close()

    store = VectorStore.open(IndexLocation.local(folder))
    mean, count = store.centroid("failures", "message") or ([], 0)
    assert count == 12 and np.allclose(mean, vectors.mean(axis=0), atol=1e-5)
    extra = _unit(rng, 1)[0].tolist()
    store.upsert("failures", [(point_id("failures", "new"), {"text": extra, "message": extra}, {})])
    mean, count = store.centroid("failures", "message") or ([], 0)  # kept from then on
    assert count == 13
    assert np.allclose(mean, np.vstack([vectors, [extra]]).mean(axis=0), atol=1e-5)


def test_a_sum_that_lost_points_is_made_again_from_the_stored_vectors(tmp_path: Path) -> None:
    """Points stored without their sum (a crash between the two writes, or another process
    writing to the same Qdrant server) are counted again at the next ``centroid``."""
    import numpy as np
    from qdrant_client import models

    rng = np.random.default_rng(5)
    vectors = _unit(rng, 15)
    store = VectorStore.open(IndexLocation.local(tmp_path / "index"))
    _fill(store, vectors[:10])
    assert (store.centroid("failures", "message") or ([], 0))[1] == 10  # kept from now on
    store._client.upsert(  # the points only, as a crash before the sum's write leaves them
        store.collection("failures"),
        points=[
            models.PointStruct(
                id=point_id("failures", f"lost{n}"),
                vector={"text": row.tolist(), "message": row[::-1].tolist()},
            )
            for n, row in enumerate(vectors[10:])
        ],
    )
    mean, count = store.centroid("failures", "message") or ([], 0)
    assert count == 15
    assert np.allclose(mean, vectors[:, ::-1].mean(axis=0), atol=1e-5)


def test_a_query_asking_for_more_than_there_is_gets_all_in_order_and_copies(
    tmp_path: Path,
) -> None:
    import numpy as np

    rng = np.random.default_rng(9)
    vectors = _unit(rng, 30)
    store = VectorStore.open(IndexLocation.local(tmp_path / "qdrant"))
    _fill(store, vectors)
    query = _unit(rng, 1)[0]

    points = store.query("failures", query.tolist(), limit=50)
    assert len(points) == 30
    assert np.allclose([p.score or 0.0 for p in points], np.sort(vectors @ query)[::-1], atol=1e-5)
    assert store.query("failures", query.tolist(), limit=50, match={"step": "nowhere"}) == []

    points[0].payload["step"] = "changed"  # a hit's payload is the caller's own copy
    again = store.query("failures", query.tolist(), limit=1)
    assert again[0].id == points[0].id and again[0].payload["step"] != "changed"
