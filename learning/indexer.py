"""The indexer: follows the event log and keeps the vector index up to date.

Each pass reads the log (``EventStore.read_all``) from the position stored with the index,
turns the events that end something (a step, an attempt before a retry, an execution, a
catalog registration) into documents (:mod:`learning.documents`), masks secrets in them,
embeds the ones not stored yet in batches and upserts them, then stores the new position.

- Incremental and resumable: the position is saved after every page, in the index itself.
- Idempotent: a document's id comes from its source event, and ids already stored are not
  embedded again; a pass interrupted before saving its position repeats no work twice in
  the index. ``overlap`` re-reads that many positions before the cursor, for a store whose
  positions can become visible out of order (PostgreSQL with several writers).
- Same code for SQLite and PostgreSQL (any ``EventStore``), local Qdrant or a server.

:class:`BackgroundIndexer` runs passes in a server process: the engine's listener only
sets a flag, and a task starts a pass once the events pause (or after ``max_wait`` of
steady traffic), with the model and Qdrant work in a low-priority thread, so the engine's
own path is not slowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from engine.core import events as ev
from engine.core.events import Event
from engine.dsl.loader import parse_playbook
from engine.dsl.models import Playbook
from engine.errors import NotFound, PlaybookInvalid
from engine.ports import CatalogStore, EventStore
from engine.runtime.redaction import Redactor
from learning.documents import (
    BLENDED,
    Document,
    execution_documents,
    playbook_document,
    vector_inputs,
)
from learning.documents import produces_documents as _produces
from learning.embedder import Embedder, shared_embedder
from learning.errors import LearningError
from learning.event_log import log_pages
from learning.offload import offload
from learning.secrets_mask import ListableCredentials, learn_credentials, redact
from learning.vector_store import TEXT, VectorStore

logger = logging.getLogger(__name__)
# Events read, and their documents embedded in one call, per page: a call sorts its texts
# by length so that batches pad little, which pays off with some hundreds of texts (about
# one document per four events); at 500 events the indexer ran at about 80 % of
# ``model.encode`` over the same texts, at 2000 at about 95 %.
PAGE = 2000
NICENESS = 10  # indexing threads yield the CPU to the engine's own work
DEFAULT_SOURCE = "events"


@dataclass(slots=True)
class IndexReport:
    """What one pass did."""

    events: int = 0  # events read
    documents: int = 0  # documents embedded and stored
    skipped: int = 0  # documents already in the index
    position: int = 0  # the log position indexed up to
    by_kind: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "events": self.events,
            "documents": self.documents,
            "skipped": self.skipped,
            "position": self.position,
            "by_kind": dict(self.by_kind),
        }


class Indexer:
    """Indexes the events of one event store and catalog into one vector store."""

    def __init__(
        self,
        events: EventStore,
        catalog: CatalogStore,
        store: VectorStore,
        *,
        embedder: Embedder | None = None,
        credentials: Sequence[ListableCredentials] = (),
        source: str = DEFAULT_SOURCE,
        page: int = PAGE,
        overlap: int = 0,
    ) -> None:
        """``credentials`` are the sources whose values are masked in every document;
        ``source`` names this event log's cursor in the index."""
        self.events = events
        self.catalog = catalog
        self.store = store
        self._embedder = embedder
        self.credentials = list(credentials)
        self.source = source
        self.page = page
        self.overlap = overlap
        self.redactor = Redactor()
        self._playbooks: dict[tuple[str, int], Playbook | None] = {}
        self._lock = asyncio.Lock()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = shared_embedder()
        return self._embedder

    async def run_once(self) -> IndexReport:
        """Index everything new in the log; return what was done.

        Raises ``IndexUnavailable`` (Qdrant), ``ModelUnavailable`` or ``StoreError``; the
        position stays where the last complete page left it."""
        async with self._lock:
            await learn_credentials(self.redactor, self.credentials)
            cursor = await offload(lambda: self.store.cursor(self.source))
            report = IndexReport(position=cursor)
            async for page in log_pages(self.events, max(0, cursor - self.overlap), self.page):
                await self._index(page, report)
                after = page[-1][0]
                if after > report.position:
                    report.position = after
                    await offload(partial(self.store.set_cursor, self.source, after))
            return report

    async def _index(self, page: list[tuple[int, Event]], report: IndexReport) -> None:
        report.events += len(page)
        wanted: dict[str, set[str]] = defaultdict(set)
        registered: list[Event] = []
        for _, event in page:
            if not _produces(event):
                continue
            if event.event_type == ev.PLAYBOOK_REGISTERED:
                registered.append(event)
            else:
                wanted[event.execution_id].add(event.event_id)
        documents: list[Document] = []
        for event in registered:
            document = await self._playbook_document(event)
            if document is not None:
                documents.append(document)
        for execution_id, event_ids in wanted.items():
            history = await self.events.read(execution_id)
            playbook = await self._playbook_of(history)
            documents.extend(execution_documents(history, playbook, event_ids))
        if documents:
            clean = [redact(document, self.redactor) for document in documents]
            stored, skipped, by_kind = await offload(
                lambda: self._store(clean), name="indexer", niceness=NICENESS
            )
            report.documents += stored
            report.skipped += skipped
            for kind, count in by_kind.items():
                report.by_kind[kind] = report.by_kind.get(kind, 0) + count

    def _store(self, documents: list[Document]) -> tuple[int, int, dict[str, int]]:
        """Embed and upsert the documents not stored yet (runs in a thread)."""
        by_kind: dict[str, list[Document]] = defaultdict(list)
        for document in documents:
            by_kind[document.kind].append(document)
        fresh: list[Document] = []
        for kind, documents_of_kind in by_kind.items():
            unique = list({document.id: document for document in documents_of_kind}.values())
            present = self.store.existing(kind, [document.id for document in unique])
            fresh.extend(document for document in unique if document.id not in present)
        texts: list[str] = []
        names: list[list[str]] = []
        for document in fresh:
            inputs = vector_inputs(document)
            names.append(list(inputs))
            texts.extend(inputs.values())
        vectors = iter(self.embedder.embed(texts))  # in the order of ``texts``
        counts: dict[str, int] = defaultdict(int)
        grouped: dict[str, list[tuple[str, dict[str, list[float]], dict[str, object]]]]
        grouped = defaultdict(list)
        for document, vector_names in zip(fresh, names, strict=True):
            named = {name: next(vectors) for name in vector_names}
            blended = [named[name] for name in BLENDED.get(document.kind, ()) if name in named]
            if blended:
                named[TEXT] = _blend([named[TEXT], *blended])
            grouped[document.kind].append((document.id, named, document.payload))
            counts[document.kind] += 1
        for kind, points in grouped.items():
            self.store.upsert(kind, points)
        return len(fresh), len(documents) - len(fresh), dict(counts)

    async def _playbook_document(self, event: Event) -> Document | None:
        path = event.payload.get("path")
        version = event.payload.get("version")
        if not isinstance(path, str) or not isinstance(version, int):
            return None
        try:
            entry = await self.catalog.get(path, version)
        except NotFound:
            return None
        return playbook_document(entry, await self._playbook(path, version))

    async def _playbook_of(self, history: list[Event]) -> Playbook | None:
        if not history or history[0].event_type != ev.PLAYBOOK_EXECUTION_REQUESTED:
            return None
        path = history[0].payload.get("playbook_path")
        version = history[0].payload.get("playbook_version")
        if not isinstance(path, str) or not isinstance(version, int):
            return None
        return await self._playbook(path, version)

    async def _playbook(self, path: str, version: int) -> Playbook | None:
        key = (path, version)
        if key not in self._playbooks:
            try:
                entry = await self.catalog.get(path, version)
                self._playbooks[key] = parse_playbook(
                    entry.content, source=entry.source or path, check=False
                )
            except (NotFound, PlaybookInvalid):
                self._playbooks[key] = None
        return self._playbooks[key]


def _blend(vectors: Sequence[Sequence[float]]) -> list[float]:
    """The unit vector along the sum of ``vectors``: its dot product with a query is
    (up to the document's own scale) the sum of theirs."""
    total = [sum(values) for values in zip(*vectors, strict=True)]
    norm = math.sqrt(sum(value * value for value in total)) or 1.0
    return [value / norm for value in total]


class BackgroundIndexer:
    """Runs indexing passes in the background after events arrive.

    ``run`` is one pass (:meth:`Indexer.run_once`, or anything that opens the index
    first). Subscribe :meth:`notify` to the engine; call :meth:`start` on the event loop
    and :meth:`aclose` when stopping. A failing pass is logged and tried again after the
    next event, never raised into the engine."""

    def __init__(
        self,
        run: Callable[[], Awaitable[IndexReport]],
        *,
        delay: float = 1.0,
        max_wait: float = 30.0,
        idle: float = 60.0,
    ) -> None:
        """A pass starts once no event has arrived for ``delay`` seconds, or ``max_wait``
        seconds after the first event it waits for, whichever comes first; and after
        ``idle`` seconds without any event (catalog registrations, and writes of other
        processes, reach the log without passing the engine's listeners)."""
        self.run = run
        self.delay = delay
        self.max_wait = max_wait
        self.idle = idle
        self.passes = 0
        self.last: IndexReport | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def notify(self, event: Event) -> None:
        """The engine listener: note that there is something new (never blocks)."""
        self._wake.set()

    def start(self) -> None:
        """Index what is already in the log, then follow it."""
        if self._task is None:
            self._wake.set()
            self._task = asyncio.create_task(self._follow(), name="indexer")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _quiet(self) -> None:
        """Wait until events stop for ``delay`` seconds (at most ``max_wait``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while True:
            self._wake.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), min(self.delay, remaining))
            except TimeoutError:
                return

    async def _follow(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.idle)
            await self._quiet()  # a burst of events becomes one pass, after the burst
            try:
                self.last = await self.run()
                self.passes += 1
            except asyncio.CancelledError:
                raise
            except LearningError as exc:  # the index or model is unavailable: say so, briefly
                logger.warning("indexing the event log skipped: %s", exc)
            except Exception:
                logger.exception("indexing the event log failed; retrying after new events")
