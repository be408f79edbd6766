"""Semantic search over execution history: failures, steps, executions and playbooks.

    searcher.search_history("connection refused by the database", kind="failures")
    searcher.similar_failures(execution_id="1a23...")   # or text="KeyError: 'id'"
    searcher.similar_playbooks("load a CSV file into postgres")

A query is embedded with the same model as the documents and compared by cosine
similarity (``score``, 1 is identical meaning): with the whole text of each document
(a failure's leans towards its error's cause), except that failures are compared with
failures (and with an error text) by their error messages alone, rewritten to say their
cause (:func:`learning.documents.normalise_error`), which the rest of the text would only
blur; once :data:`MIN_CENTRED` failures are indexed, those messages are compared after
the mean of all of them is taken out (the score is then that centred cosine, and the
plain one is the payload's ``cosine``). Each hit links back to its execution and to the
event it came from. Failures are
reported once per failing step run (its best matching attempt), and playbooks once per
path. Calls block (model, local Qdrant): async callers run them in a thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from learning.documents import normalise_error
from learning.embedder import Embedder, shared_embedder
from learning.errors import InvalidQuery
from learning.vector_store import KINDS, TEXT, Point, VectorStore

DEFAULT_K = 10
MESSAGE = "message"  # the failures' vector of the error message alone
MAX_K = 100
MAX_FETCH = 2 * MAX_K  # points asked of one kind at most
MIN_CENTRED = 20  # failures needed before similar_failures centres on their mean
CENTRED_FETCH = 4  # candidates per wanted failure that the centred cosine re-orders
FILTER_FIELDS = frozenset(
    {
        "playbook_path",
        "playbook_version",
        "execution_id",
        "step",
        "status",
        "tool_kind",
        "error_kind",
        "error_code",
        "final",
    }
)
_SINGULAR = {
    "failure": "failures",
    "step": "steps",
    "execution": "executions",
    "playbook": "playbooks",
}
_TOP_LEVEL = frozenset(
    {"text", "kind", "execution_id", "playbook_path", "step", "event_id", "seq", "status"}
    | {"timestamp", "registered_at"}
)


def normalise_kind(kind: str | None) -> str | None:
    """``failures``/``failure`` → ``failures`` (None stays None); ``InvalidQuery`` else."""
    if kind is None:
        return None
    name = _SINGULAR.get(kind.strip().lower(), kind.strip().lower())
    if name not in KINDS:
        raise InvalidQuery(f"unknown kind {kind!r}; use one of: {', '.join(KINDS)}")
    return name


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result, best first in a result list."""

    kind: str  # failure | step | execution | playbook
    score: float
    text: str
    playbook_path: str | None = None
    execution_id: str | None = None
    step: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def links(self) -> dict[str, str]:
        """API paths of the execution and of the event this hit came from."""
        if not self.execution_id:
            path = self.playbook_path or ""
            return {"playbook": f"/api/catalog/{quote(path, safe='/')}"} if path else {}
        execution = f"/api/executions/{quote(self.execution_id, safe='')}"
        links = {"execution": execution}
        seq = self.payload.get("seq")
        if isinstance(seq, int):
            links["event"] = f"{execution}/events?after_seq={seq - 1}"
        return links

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "score": round(self.score, 4),
            "playbook_path": self.playbook_path,
            "execution_id": self.execution_id,
            "step": self.step,
            "text": self.text,
            "event_id": self.payload.get("event_id"),
            "seq": self.payload.get("seq"),
            "status": self.payload.get("status"),
            "timestamp": self.payload.get("timestamp") or self.payload.get("registered_at"),
            "links": self.links,
            "details": {key: value for key, value in self.payload.items() if key not in _TOP_LEVEL},
        }


def _hit(point: Point) -> Hit:
    payload = point.payload
    return Hit(
        kind=str(payload.get("kind") or ""),
        score=float(point.score or 0.0),
        text=str(payload.get("text") or ""),
        playbook_path=payload.get("playbook_path"),
        execution_id=payload.get("execution_id"),
        step=payload.get("step"),
        payload=payload,
    )


def _check_filters(filters: Mapping[str, Any] | None) -> dict[str, Any]:
    if not filters:
        return {}
    unknown = sorted(set(filters) - FILTER_FIELDS)
    if unknown:
        raise InvalidQuery(
            f"unknown filter {', '.join(unknown)}; filter on: {', '.join(sorted(FILTER_FIELDS))}"
        )
    return {key: value for key, value in filters.items() if value is not None}


def _check_k(k: int) -> int:
    if not 1 <= k <= MAX_K:
        raise InvalidQuery(f"k must be between 1 and {MAX_K}, got {k}")
    return k


def _dedupe(hits: Iterable[Hit]) -> list[Hit]:
    """One hit per failing step run and per playbook path; hits come best first."""
    seen: set[tuple[str, ...]] = set()
    kept: list[Hit] = []
    for hit in hits:
        if hit.kind == "failure":
            key: tuple[str, ...] = (
                "failure",
                str(hit.execution_id),
                str(hit.payload.get("step_run_id")),
                str(hit.payload.get("iteration")),
            )
        elif hit.kind == "playbook":
            key = ("playbook", str(hit.playbook_path))
        else:
            key = (hit.kind, str(hit.payload.get("event_id")), str(hit.execution_id))
        if key not in seen:
            seen.add(key)
            kept.append(hit)
    return kept


class Searcher:
    """Answers searches from one vector store with one embedding model."""

    def __init__(self, store: VectorStore, embedder: Embedder | None = None) -> None:
        self.store = store
        self._embedder = embedder

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = shared_embedder()
        return self._embedder

    def _vector(self, text: str) -> list[float]:
        if not text or not text.strip():
            raise InvalidQuery("the search text is empty; describe what you are looking for")
        return self.embedder.embed([text.strip()])[0]

    def _query(
        self,
        kinds: Iterable[str],
        vector: list[float],
        k: int,
        match: Mapping[str, Any] | None = None,
        exclude_execution: str | None = None,
        using: str = TEXT,
    ) -> list[Hit]:
        """The ``k`` best hits of ``kinds`` after exclusion and deduplication.

        Each kind is asked for ``2 k`` points (every returned point's payload is copied,
        which costs more than the search itself in a large local index), and asked again
        for three times as many while a kind's unseen points could still rank among the
        first ``k``: when fewer than ``k`` hits survive, or the ``k``-th scores below the
        last point fetched from a kind that had more."""
        fetch = min(MAX_FETCH, 2 * k)
        while True:
            hits: list[Hit] = []
            bound = float("-inf")  # the best score a point not fetched yet can have
            for kind in kinds:
                points = self.store.query(kind, vector, limit=fetch, match=match, using=using)
                hits.extend(_hit(point) for point in points)
                if len(points) == fetch:
                    bound = max(bound, float(points[-1].score or 0.0))
            if exclude_execution is not None:
                hits = [hit for hit in hits if hit.execution_id != exclude_execution]
            hits.sort(key=lambda hit: hit.score, reverse=True)
            kept = _dedupe(hits)
            complete = len(kept) >= k and kept[k - 1].score >= bound
            if complete or bound == float("-inf") or fetch >= MAX_FETCH:
                return kept[:k]
            fetch = min(MAX_FETCH, fetch * 3)

    def search_history(
        self,
        text: str,
        kind: str | None = None,
        filters: Mapping[str, Any] | None = None,
        k: int = DEFAULT_K,
    ) -> list[Hit]:
        """The ``k`` documents closest in meaning to ``text``, best first, of one kind or of
        all four, whose payload equals ``filters`` on every key. ``InvalidQuery`` for an
        empty text, an unknown kind or filter."""
        name = normalise_kind(kind)
        match = _check_filters(filters)
        kinds = [name] if name else list(KINDS)
        return self._query(kinds, self._vector(text), _check_k(k), match)

    def similar_failures(
        self, *, execution_id: str | None = None, text: str | None = None, k: int = 5
    ) -> list[Hit]:
        """Past failures like the one of ``execution_id`` (other executions only), or like
        an error ``text``, compared by their error messages. ``InvalidQuery`` when neither
        is given, or when the execution has no indexed failure."""
        _check_k(k)
        if execution_id:
            vector = self._failure_vector(execution_id)
        elif text:
            vector = self._cause_vector(text)
        else:
            raise InvalidQuery("give an execution id or an error text to compare with")
        centred = self._centred(vector, k, exclude_execution=execution_id)
        if centred is not None:
            return centred
        return self._query(["failures"], vector, k, exclude_execution=execution_id, using=MESSAGE)

    def _centred(
        self, vector: list[float], k: int, exclude_execution: str | None
    ) -> list[Hit] | None:
        """The ``k`` failures nearest ``vector`` by their message vectors' cosine after
        both are centred on the mean of all failures' message vectors; None when fewer
        than :data:`MIN_CENTRED` failures make that mean.

        Messages of every cause share a direction (error reports sound alike), and
        failures near it rank high for any query. Taking the mean out compares what is
        particular to each. The candidates are the points that rank first for the query
        minus the mean (a dot product ranks by ``q·d - m·d``); the exact centred cosine
        orders them. Each hit keeps the plain cosine in its payload (``cosine``)."""
        import numpy as np

        found = self.store.centroid("failures", MESSAGE)
        if found is None or found[1] < MIN_CENTRED:
            return None
        mean = np.asarray(found[0])
        probe = np.asarray(vector) - mean
        size = float(np.linalg.norm(probe))
        if size == 0.0:
            return None
        query = np.asarray(vector)
        fetch = min(MAX_FETCH, CENTRED_FETCH * (k + 5))
        while True:
            points = self.store.query("failures", probe.tolist(), limit=fetch, using=MESSAGE)
            vectors = self.store.vectors("failures", [p.id for p in points], using=MESSAGE)
            hits: list[Hit] = []
            for point in points:
                stored = vectors.get(point.id)
                if stored is None or point.payload.get("execution_id") == exclude_execution:
                    continue
                offset = np.asarray(stored) - mean
                length = float(np.linalg.norm(offset))
                score = float(offset @ probe) / (length * size) if length else 0.0
                payload = point.payload | {"cosine": round(float(query @ np.asarray(stored)), 4)}
                hits.append(_hit(Point(point.id, payload, score=score)))
            hits.sort(key=lambda hit: hit.score, reverse=True)
            kept = _dedupe(hits)
            # too few survive the exclusion and deduplication (one execution's many failing
            # iterations or attempts): ask again for more, as _query does
            if len(kept) >= k or len(points) < fetch or fetch >= MAX_FETCH:
                return kept[:k]
            fetch = min(MAX_FETCH, fetch * 3)

    def similar_playbooks(self, description: str, k: int = 5) -> list[Hit]:
        """Catalog playbooks closest to ``description``, one hit per path."""
        return self._query(["playbooks"], self._vector(description), _check_k(k))

    def failure_of(self, execution_id: str) -> Hit | None:
        """The indexed failure that ended ``execution_id`` (else its last failed attempt)."""
        points = self.store.scan("failures", match={"execution_id": execution_id})
        if not points:
            return None
        best = max(points, key=_failure_rank)
        return _hit(Point(best.id, best.payload, score=1.0))

    def _failure_vector(self, execution_id: str) -> list[float]:
        points = self.store.scan(
            "failures", match={"execution_id": execution_id}, with_vectors=True, using=MESSAGE
        )
        if not points:
            raise InvalidQuery(
                f"execution '{execution_id}' has no indexed failure: it did not fail, or "
                "it has not been indexed yet (run `noetl-agent indexer --once`)"
            )
        best = max(points, key=_failure_rank)
        if best.vector is None:
            return self._cause_vector(str(best.payload.get("message") or best.payload.get("text")))
        return best.vector

    def _cause_vector(self, message: str) -> list[float]:
        """An error text embedded as the failures' messages are (by its cause)."""
        if not message or not message.strip():
            raise InvalidQuery("the error text is empty; give the message to compare with")
        return self._vector(normalise_error(message))


def _failure_rank(point: Point) -> tuple[bool, int]:
    """The final failure first, then the latest attempt."""
    payload = point.payload
    return bool(payload.get("final")), int(payload.get("seq") or 0)
