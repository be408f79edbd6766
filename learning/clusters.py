"""Error clusters: failures of similar meaning grouped across playbooks.

Failures are compared by their error messages (the ``message`` vector), oldest first:
each joins the cluster whose centroid (mean of its unit vectors) is most similar, if that
similarity reaches ``threshold``, or starts a new one.
A cluster reports how many failures it holds, in which playbooks and steps, when it was
first and last seen, and a representative message: the member closest to the centroid.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from learning.vector_store import Point, VectorStore

DEFAULT_THRESHOLD = 0.75  # cosine similarity to join a cluster
MAX_EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class ErrorCluster:
    """A group of failures that mean the same thing."""

    count: int
    representative: str  # the message closest to the cluster's centre
    playbooks: dict[str, int]  # path → failures
    steps: dict[str, int]  # "path/step" → failures
    error_kinds: dict[str, int]
    first_seen: str | None
    last_seen: str | None
    executions: list[str] = field(default_factory=list)  # up to MAX_EXAMPLES, newest first

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "representative": self.representative,
            "playbooks": self.playbooks,
            "steps": self.steps,
            "error_kinds": self.error_kinds,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "executions": self.executions,
        }


def _group(vectors: np.ndarray, threshold: float) -> list[list[int]]:
    members: list[list[int]] = []
    sums: list[np.ndarray] = []
    for index, vector in enumerate(vectors):
        best, best_score = -1, threshold
        for cluster, total in enumerate(sums):
            centre = total / (np.linalg.norm(total) or 1.0)
            score = float(centre @ vector)
            if score >= best_score:
                best, best_score = cluster, score
        if best < 0:
            members.append([index])
            sums.append(vector.astype(np.float64).copy())
        else:
            members[best].append(index)
            sums[best] += vector
    return members


def _summary(points: list[Point], vectors: np.ndarray, indexes: list[int]) -> ErrorCluster:
    centre = vectors[indexes].mean(axis=0)
    centre /= np.linalg.norm(centre) or 1.0
    closest = max(indexes, key=lambda i: float(vectors[i] @ centre))
    payloads: list[Mapping[str, Any]] = [points[i].payload for i in indexes]
    stamps = sorted(str(p.get("timestamp")) for p in payloads if p.get("timestamp"))
    newest = sorted(payloads, key=lambda p: str(p.get("timestamp") or ""), reverse=True)
    executions = list(dict.fromkeys(str(p.get("execution_id")) for p in newest))
    return ErrorCluster(
        count=len(indexes),
        representative=str(
            points[closest].payload.get("message") or points[closest].payload.get("text")
        ),
        playbooks=dict(Counter(str(p.get("playbook_path")) for p in payloads).most_common()),
        steps=dict(
            Counter(f"{p.get('playbook_path')}/{p.get('step')}" for p in payloads).most_common()
        ),
        error_kinds=dict(
            Counter(str(p.get("error_code") or p.get("error_kind")) for p in payloads).most_common()
        ),
        first_seen=stamps[0] if stamps else None,
        last_seen=stamps[-1] if stamps else None,
        executions=executions[:MAX_EXAMPLES],
    )


def error_clusters(
    store: VectorStore,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_count: int = 1,
    playbook: str | None = None,
) -> list[ErrorCluster]:
    """Clusters of the final failures in the index (of one ``playbook`` if given), largest
    first; only those with at least ``min_count`` failures."""
    match: dict[str, Any] = {"final": True}
    if playbook:
        match["playbook_path"] = playbook
    found = store.scan("failures", match=match, with_vectors=True, using="message")
    points = [point for point in found if point.vector]
    if not points:
        return []
    points.sort(key=lambda p: str(p.payload.get("timestamp") or ""))
    vectors = np.asarray([p.vector for p in points], dtype=np.float64)
    groups = _group(vectors, threshold)
    clusters = [_summary(points, vectors, indexes) for indexes in groups]
    clusters = [cluster for cluster in clusters if cluster.count >= min_count]
    clusters.sort(key=lambda c: (-c.count, c.last_seen or ""))
    return clusters
