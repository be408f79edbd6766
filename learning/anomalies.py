"""Duration anomalies: step runs that took unusually long (or short) for that step.

Each step of each playbook is judged against its own history with the robust (modified)
z-score of Iglewicz and Hoaglin: ``z = 0.6745 (x - median) / MAD``, where MAD is the
median absolute deviation; a run with ``|z| > threshold`` (3.5 by default) is an anomaly.
When more than half of the durations are equal (MAD is 0) the mean absolute deviation
stands in (``z = (x - median) / (1.2533 · meanAD)``). Steps with fewer than
``min_history`` timed runs are not judged.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from statistics import median
from typing import Any

from learning.vector_store import VectorStore

DEFAULT_THRESHOLD = 3.5
MIN_HISTORY = 5


@dataclass(frozen=True, slots=True)
class DurationAnomaly:
    """One step run whose duration is far from its step's usual."""

    playbook_path: str
    step: str
    execution_id: str
    step_run_id: str | None
    duration_ms: int
    median_ms: float
    z: float
    history: int  # timed runs of this step
    timestamp: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "playbook_path": self.playbook_path,
            "step": self.step,
            "execution_id": self.execution_id,
            "step_run_id": self.step_run_id,
            "duration_ms": self.duration_ms,
            "median_ms": self.median_ms,
            "z": round(self.z, 2),
            "direction": "slow" if self.z > 0 else "fast",
            "history": self.history,
            "timestamp": self.timestamp,
        }


def robust_z(values: list[float]) -> list[float]:
    """The modified z-score of every value (zeros when the values do not spread)."""
    centre = median(values)
    deviations = [abs(v - centre) for v in values]
    mad = median(deviations)
    if mad > 0:
        return [0.6745 * (v - centre) / mad for v in values]
    mean_ad = sum(deviations) / len(deviations)
    if mean_ad == 0:
        return [0.0 for _ in values]
    return [(v - centre) / (1.253314 * mean_ad) for v in values]


def duration_anomalies(
    store: VectorStore,
    *,
    playbook: str | None = None,
    step: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    min_history: int = MIN_HISTORY,
) -> list[DurationAnomaly]:
    """Anomalous step runs in the index (of one playbook and step, if given), most
    anomalous first."""
    match: dict[str, Any] = {}
    if playbook:
        match["playbook_path"] = playbook
    if step:
        match["step"] = step
    runs: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for point in store.scan("steps", match=match or None):
        payload = point.payload
        if isinstance(payload.get("duration_ms"), int):
            runs[(str(payload.get("playbook_path")), str(payload.get("step")))].append(payload)
    found: list[DurationAnomaly] = []
    for (path, name), history in runs.items():
        if len(history) < min_history:
            continue
        durations = [float(p["duration_ms"]) for p in history]
        centre = median(durations)
        for payload, z in zip(history, robust_z(durations), strict=True):
            if abs(z) > threshold:
                found.append(
                    DurationAnomaly(
                        playbook_path=path,
                        step=name,
                        execution_id=str(payload.get("execution_id")),
                        step_run_id=payload.get("step_run_id"),
                        duration_ms=int(payload["duration_ms"]),
                        median_ms=centre,
                        z=z,
                        history=len(history),
                        timestamp=payload.get("timestamp"),
                    )
                )
    found.sort(key=lambda anomaly: -abs(anomaly.z))
    return found
