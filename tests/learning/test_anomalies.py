"""Duration anomalies: the robust z-score, and a slow run found among real step runs."""

from __future__ import annotations

import pytest

from learning.anomalies import duration_anomalies, robust_z
from learning.embedder import SentenceEmbedder
from learning.indexer import Indexer
from learning.vector_store import VectorStore
from tests.learning import corpus
from tests.learning.conftest import Stack


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([10, 11, 12, 13, 14], [-1.349, -0.6745, 0.0, 0.6745, 1.349]),  # MAD 1
        ([10, 10, 10, 10, 50], [0.0, 0.0, 0.0, 0.0, 3.989]),  # MAD 0: mean deviation 8
        ([7, 7, 7], [0.0, 0.0, 0.0]),  # no spread at all
    ],
)
def test_robust_z(values: list[float], expected: list[float]) -> None:
    assert robust_z(values) == pytest.approx(expected, abs=1e-3)


async def test_a_slow_run_stands_out_against_its_steps_history(
    stack: Stack, store: VectorStore, embedder: SentenceEmbedder
) -> None:
    for _ in range(7):
        await stack.run(corpus.SLEEPER, {"seconds": 0.01})
    slow = await stack.run(corpus.SLEEPER, {"seconds": 1.0})
    await Indexer(stack.engine.events, stack.engine.catalog, store, embedder=embedder).run_once()

    found = duration_anomalies(store, playbook="ops/sleeper")

    assert found
    worst = found[0]
    assert (worst.execution_id, worst.step, worst.history) == (slow, "start", 8)
    assert worst.z > 3.5
    assert worst.to_dict()["direction"] == "slow"
    assert worst.duration_ms >= 1000 > worst.median_ms
    assert duration_anomalies(store, playbook="ops/sleeper", min_history=9) == []
