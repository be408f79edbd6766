"""Documents: what of the event log and the catalog gets embedded and searched.

Four kinds, one Qdrant collection each:

    failures    a step run that ended in error (``step.finished``, status error) and each
                attempt that failed before a retry (``retry.processed``, status error;
                the first attempt only by the reason ``retry.started`` gives): the
                error text first, then the step, tool kind, playbook and inputs
    steps       every finished step run: status, duration, tool kind, inputs
    executions  every finished execution (``playbook.processed``): outcome, failing step
                and error, the steps it ran
    playbooks   every registered catalog version: name, description, steps and tools

A document is built from the whole history of its execution (so a step's tool kind and
start time are known even when the indexer reads the log in pieces) but belongs to one
event, whose id makes its key: rebuilding it gives the same key, so indexing is
idempotent. Everything here is pure; secrets are masked by the indexer afterwards.

What is embedded is not always the stored text (:func:`vector_inputs`): a failure's
``message`` vector is made from its error message rewritten to say its cause plainly
(:func:`normalise_error`: volatile values such as paths, hosts and ids become their kind,
qualified class names lose their package, identifiers become words, the exception classes
go after the message, HTTP statuses and errno names get their standard meaning), so the
same cause worded by different libraries lands close; and a failure's ``text`` vector is
blended with that vector (:data:`BLENDED`), so a description of the cause finds the
failure even when its step, playbook and inputs are about something else (weighing the
cause more found failures by their cause slightly more often, and by their step and
playbook clearly less often: ``evals/retrieval``).

An index keeps the vectors it was built with: documents already stored are not embedded
again, so a change to what is embedded reaches an existing index only for new documents,
until the index is removed and built again (``noetl-agent indexer --once``).
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.core import events as ev
from engine.core.events import Event
from engine.dsl.models import Playbook
from engine.ports import CatalogEntry
from learning.vector_store import TEXT, point_id

MAX_MESSAGE = 1000  # characters of an error message kept
MAX_SUMMARY = 300  # characters of an inputs or workload summary
MAX_CHAIN = 3  # leading exception classes moved after an error message
TRIGGERS = frozenset(
    {ev.STEP_FINISHED, ev.RETRY_PROCESSED, ev.PLAYBOOK_PROCESSED, ev.PLAYBOOK_REGISTERED}
)
CAUSE = "message"  # the failures' aspect: the error message, embedded by its cause
BLENDED: dict[str, tuple[str, ...]] = {"failures": (CAUSE,)}
"""Per kind, the aspects whose vectors are added into the ``text`` vector (which is then
normalised again), so that the whole-text vector leans towards them."""


@dataclass(frozen=True, slots=True)
class Document:
    """One searchable text with the payload that links it back to its source."""

    kind: str  # failures | steps | executions | playbooks
    key: str  # unique within the kind
    text: str
    payload: dict[str, Any] = field(default_factory=dict)
    aspects: dict[str, str] = field(default_factory=dict)  # more texts, one vector each

    @property
    def id(self) -> str:
        return point_id(self.kind, self.key)


# ---------------------------------------------------------------------------- causes

_ERRNO_PREFIX = re.compile(r"\[Errno -?\d+\]\s*")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.I)
_IP = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b")
_PATH = re.compile(r"(?<![\w/])(?:[A-Za-z]:)?(?:/{1,2}[\w.@%+~-]+){2,}/?")
# a lower-case dotted name with a port, or with at least three labels: db.internal:5432,
# api.example.com (not file.csv, nor java.lang.OutOfMemoryError)
_HOST = re.compile(r"\b(?:[a-z0-9-]+\.)+[a-z]{2,}:\d+\b|\b(?:[a-z0-9-]+\.){2,}[a-z]{2,}\b")
_IDENTIFIER = re.compile(r"\b[A-Za-z][A-Za-z0-9]*(?:[._][A-Za-z0-9]+)*\b")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_CLASS = re.compile(r"^([A-Za-z_][\w.]*): (.+)$", re.S)
# a class named with its package or module: java.lang.OutOfMemoryError, requests.HTTPError
_QUALIFIED = re.compile(r"\b(?:[a-z_][a-z0-9_]*\.)+(?=_*[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*\b)")
_HTTP_CODE = re.compile(r"\b([45]\d\d)\b")
_HTTP_WORD = re.compile(r"\b(?:http|status)\b", re.I)
_ERRNO_NAME = re.compile(r"\bE[A-Z]{3,}\b")
_MASK = re.compile(r"\*{3,}")  # a masked secret says nothing of the cause
# the advice tools append to their messages: "...; check that the server is running"
_ADVICE = re.compile(r";\s+(?:check|raise|fix|give|create|run|use|make)\b[^\n]*", re.I)
# a SQLSTATE as PostgreSQL tools cite it: "(42P01): ...", "SQLSTATE 42P01", "sqlstate=42P01"
_SQLSTATE = re.compile(r"\((\w{5})\):|\bsqlstate\W{0,3}(\w{5})\b", re.I)
_VAGUE_DOC = ("Base class", "Common base class", "Unspecified")


def _words(identifier: str) -> str:
    """``ConnectionRefusedError`` → ``connection refused error``; ``order_id`` →
    ``order id``; a name whose pieces would be single letters (``GiB``) stays."""
    if identifier.isupper():
        return identifier
    pieces: list[str] = []
    for part in re.split(r"[._]", identifier):
        split = _CAMEL.split(part)
        pieces.extend(split if all(len(piece) > 1 for piece in split) else [part])
    words = " ".join(pieces)
    return words.lower() if words != identifier else identifier


def _class_meanings(classes: Sequence[str]) -> list[str]:
    """What Python says its built-in exception classes mean (``KeyError``: "Mapping key
    not found."), for those of ``classes`` that are built in and not a vague base."""
    import builtins

    found: list[str] = []
    for name in classes:
        kind = getattr(builtins, name, None)
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            continue
        doc = (kind.__doc__ or "").strip()
        if doc and not doc.startswith(_VAGUE_DOC):
            found.append(doc.splitlines()[0])
    return found


def _sqlstate_meanings(text: str) -> list[str]:
    """The PostgreSQL condition named by each SQLSTATE ``text`` cites (``42P01`` →
    "undefined table"), from asyncpg's exception classes."""
    if not _SQLSTATE.search(text):
        return []
    conditions = _sqlstate_conditions()
    found = (conditions.get((m.group(1) or m.group(2)).upper()) for m in _SQLSTATE.finditer(text))
    return [name for name in found if name]


@functools.cache
def _sqlstate_conditions() -> dict[str, str]:
    """SQLSTATE → condition in words, from asyncpg's exception classes
    (``UndefinedTableError`` → "undefined table"; ``PostgresSyntaxError`` → "syntax")."""
    import asyncpg.exceptions

    conditions: dict[str, str] = {}
    for value in vars(asyncpg.exceptions).values():
        code = getattr(value, "sqlstate", None)
        if isinstance(value, type) and isinstance(code, str) and code not in conditions:
            name = value.__name__.removesuffix("Error").removeprefix("Postgres")
            conditions[code] = _words(name).lower() if name else ""
    return {code: words for code, words in conditions.items() if words}


def _meanings(text: str) -> list[str]:
    """The standard meaning of the HTTP error statuses (with their phrase, or beside the
    word HTTP or status) and of the errno names (``ECONNREFUSED``) that ``text`` cites."""
    from http import HTTPStatus

    found: list[str] = []
    for match in _HTTP_CODE.finditer(text):
        try:
            status = HTTPStatus(int(match.group(1)))
        except ValueError:
            continue
        if status.phrase.lower() in text.lower() or _HTTP_WORD.search(text):
            found.append(f"{status.phrase}: {status.description}")
    for match in _ERRNO_NAME.finditer(text):
        code = getattr(errno, match.group(0), None)
        if isinstance(code, int):
            found.append(os.strerror(code))
    return list(dict.fromkeys(found))


def normalise_error(message: str) -> str:
    """``message`` rewritten to say its cause plainly, for comparing failures by meaning:
    volatile values (errno prefixes, URLs, ids, IP addresses, paths, host names) become
    the word for their kind, identifiers become words, the leading exception classes of a
    chain (``JavaError: java.lang.OutOfMemoryError: Java heap space``) move after the
    message, innermost first, a class named with its package loses the package, and the
    standard meanings of the HTTP statuses and errno names it cites are added on separate
    lines."""
    text = _QUALIFIED.sub("", message.strip())
    classes: list[str] = []
    while (head := _CLASS.match(text)) and len(classes) < MAX_CHAIN:
        classes.insert(0, head.group(1).lstrip("_"))  # a private class is still its name
        text = head.group(2)
    meanings = _class_meanings(classes) + _sqlstate_meanings(text)
    text = _ADVICE.sub("", text).strip()
    text = " ".join([text, *(f"({name})" for name in classes)])
    text = _MASK.sub(" ", text)
    text = _ERRNO_PREFIX.sub("", text)
    text = _URL.sub(" url ", text)
    text = _UUID.sub(" id ", text)
    text = _IP.sub(" host ", text)
    text = _PATH.sub(" path ", text)
    text = _HOST.sub(" host ", text)
    text = re.sub(r"[ \t]+", " ", text).strip()
    text = _IDENTIFIER.sub(lambda match: _words(match.group(0)), text)
    return "\n".join(dict.fromkeys([text, *meanings, *_meanings(text)]))


def vector_inputs(document: Document) -> dict[str, str]:
    """The text embedded for each named vector of ``document`` (``text`` and each
    aspect), made from the document as stored, so after its secrets are masked: a
    failure's message by :func:`normalise_error`, everything else as it is."""
    inputs = {TEXT: document.text}
    for name, text in document.aspects.items():
        cause = document.kind == "failures" and name == CAUSE
        inputs[name] = normalise_error(text) if cause else text
    return inputs


# ---------------------------------------------------------------------------- documents


def produces_documents(event: Event) -> bool:
    """Whether ``event`` is the source of a document (see the module docstring)."""
    if event.event_type == ev.RETRY_PROCESSED:
        return event.status == ev.STATUS_ERROR
    if event.event_type == ev.RETRY_STARTED:
        return event.attempt == 2  # the only trace of the first attempt's failure
    return event.event_type in TRIGGERS


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _compact(value: Any, limit: int = MAX_SUMMARY) -> str:
    try:
        text = json.dumps(value, default=str, ensure_ascii=False, separators=(", ", ": "))
    except (TypeError, ValueError):
        text = str(value)
    return _clip(text, limit)


def _millis(start: str | None, end: str | None) -> int | None:
    if not start or not end:
        return None
    try:
        then = datetime.fromisoformat(start.replace("Z", "+00:00"))
        later = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0, round((later - then).total_seconds() * 1000))


def _step_name(event: Event) -> str:
    if event.step_run_id:
        return event.step_run_id.partition("#")[0]
    return (event.entity_id or "").partition(".")[0]


def _error_parts(error: Any) -> tuple[str, str | None, str | None]:
    """(message, kind, code) of an error payload."""
    if not isinstance(error, Mapping):
        return (str(error) if error else "unknown error"), None, None
    message = str(error.get("message") or error.get("code") or "unknown error")
    kind = error.get("kind")
    code = error.get("code")
    return _clip(message, MAX_MESSAGE), (str(kind) if kind else None), (str(code) if code else None)


@dataclass(slots=True)
class _History:
    """What the whole event history of one execution says, for building its documents."""

    execution_id: str
    playbook: Playbook | None
    playbook_path: str | None = None
    playbook_version: int | None = None
    workload: dict[str, Any] = field(default_factory=dict)
    parent_execution_id: str | None = None
    requested_at: str | None = None
    step_started: dict[str, str] = field(default_factory=dict)  # step_run_id → timestamp
    tool_kinds: dict[str, str] = field(default_factory=dict)  # step_run_id → tool kind
    attempts: dict[str, int] = field(default_factory=dict)  # step_run_id → last attempt
    steps_run: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, events: Sequence[Event], playbook: Playbook | None) -> _History:
        history = cls(events[0].execution_id if events else "", playbook)
        for event in events:
            kind = event.event_type
            if kind == ev.PLAYBOOK_EXECUTION_REQUESTED:
                payload = event.payload
                history.playbook_path = payload.get("playbook_path")
                history.playbook_version = payload.get("playbook_version")
                history.workload = dict(payload.get("workload") or {})
                history.parent_execution_id = payload.get("parent_execution_id")
                history.requested_at = event.timestamp
            elif kind == ev.STEP_STARTED and event.step_run_id:
                history.step_started.setdefault(event.step_run_id, event.timestamp)
                history.steps_run.append(_step_name(event))
            elif kind == ev.TOOL_PROCESSED and event.step_run_id:
                tool_kind = event.payload.get("kind")
                if isinstance(tool_kind, str):
                    history.tool_kinds.setdefault(event.step_run_id, tool_kind)
            if event.step_run_id and event.attempt:
                current = history.attempts.get(event.step_run_id, 0)
                history.attempts[event.step_run_id] = max(current, event.attempt)
        return history

    def tool_kind(self, step: str, step_run_id: str | None) -> str | None:
        if step_run_id and step_run_id in self.tool_kinds:
            return self.tool_kinds[step_run_id]
        definition = self._step(step)
        if definition is None:
            return None
        return "+".join(tool.kind for tool in definition.tools)

    def _step(self, step: str) -> Any:
        if self.playbook is None:
            return None
        try:
            return self.playbook.step(step)
        except KeyError:
            return None

    def step_description(self, step: str) -> str | None:
        definition = self._step(step)
        if definition is None:
            return None
        descs = [definition.desc, *(tool.desc for tool in definition.tools)]
        return "; ".join(d for d in descs if d) or None

    def inputs(self, step: str) -> str | None:
        definition = self._step(step)
        if definition is None:
            return None
        merged: dict[str, Any] = dict(definition.input)
        for tool in definition.tools:
            merged.update(tool.input or {})
        return _compact(merged) if merged else None

    @property
    def description(self) -> str | None:
        if self.playbook is None:
            return None
        return self.playbook.metadata.description

    def base(self, event: Event) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "playbook_path": self.playbook_path,
            "playbook_version": self.playbook_version,
            "parent_execution_id": self.parent_execution_id,
            "event_id": event.event_id,
            "seq": event.seq,
            "timestamp": event.timestamp,
        }


def _lines(*parts: str | None) -> str:
    return "\n".join(part for part in parts if part)


def _failure(history: _History, event: Event, *, final: bool) -> Document:
    step = _step_name(event)
    error_kind: str | None
    code: str | None
    if event.event_type == ev.RETRY_STARTED:
        # The first attempt's error is known only by its reason, e.g. python_TimeoutError.
        reason = str(event.payload.get("reason") or "error")
        kind_part, _, code_part = reason.partition("_")
        error_kind, code = kind_part or None, code_part or None
        message = f"{code or reason} ({error_kind})" if code else reason
        attempt = 1
    else:
        message, error_kind, code = _error_parts(event.payload.get("error"))
        attempt = event.attempt or history.attempts.get(event.step_run_id or "", 1)
    tool_kind = history.tool_kind(step, event.step_run_id)
    where = f"step {step}" + (f" ({tool_kind})" if tool_kind else "")
    where += f" of playbook {history.playbook_path}"
    if final:
        outcome = f"failed after {attempt} attempt{'s' if attempt != 1 else ''}"
    else:
        outcome = f"attempt {attempt} failed and was retried"
    inputs = history.inputs(step)
    text = _lines(
        message,
        f"{where} {outcome}" + (f"; error {error_kind}/{code}" if error_kind or code else ""),
        history.step_description(step),
        f"playbook: {history.description}" if history.description else None,
        f"inputs: {inputs}" if inputs else None,
    )
    payload = history.base(event) | {
        "kind": "failure",
        "step": step,
        "step_run_id": event.step_run_id,
        "iteration": event.iteration,
        "attempt": attempt,
        "final": final,
        "status": "error",
        "tool_kind": tool_kind,
        "error_kind": error_kind,
        "error_code": code,
        "message": message,
        "text": text,
    }
    return Document(
        "failures",
        f"{history.execution_id}/{event.event_id}",
        text,
        payload,
        aspects={"message": message},
    )


def _step(history: _History, event: Event) -> Document:
    step = _step_name(event)
    tool_kind = history.tool_kind(step, event.step_run_id)
    started = history.step_started.get(event.step_run_id or "")
    duration = _millis(started, event.timestamp)
    attempts = history.attempts.get(event.step_run_id or "", 1)
    status = event.status or "success"
    took = f" in {duration} ms" if duration is not None else ""
    head = f"step {step}" + (f" ({tool_kind})" if tool_kind else "")
    outcome = f"{head} of playbook {history.playbook_path}: {status}{took}"
    if attempts > 1:
        outcome += f" after {attempts} attempts"
    error_text = None
    if status == ev.STATUS_ERROR:
        error_text = _error_parts(event.payload.get("error"))[0]
    inputs = history.inputs(step)
    text = _lines(
        outcome,
        error_text,
        history.step_description(step),
        f"inputs: {inputs}" if inputs else None,
    )
    payload = history.base(event) | {
        "kind": "step",
        "step": step,
        "step_run_id": event.step_run_id,
        "status": status,
        "tool_kind": tool_kind,
        "duration_ms": duration,
        "attempts": attempts,
        "text": text,
    }
    return Document("steps", f"{history.execution_id}/{event.event_id}", text, payload)


def _execution(history: _History, event: Event) -> Document:
    status = {"success": "completed", "error": "failed"}.get(event.status or "", event.status)
    duration = _millis(history.requested_at, event.timestamp)
    error = event.payload.get("error")
    failed_step = error.get("step") if isinstance(error, Mapping) else None
    head = f"execution of playbook {history.playbook_path} {status}"
    if duration is not None:
        head += f" in {duration} ms"
    error_line = None
    if error:
        message, _, _ = _error_parts(error)
        error_line = f"failed at step {failed_step}: {message}" if failed_step else message
    steps = list(dict.fromkeys(history.steps_run))
    text = _lines(
        head,
        error_line,
        f"playbook: {history.description}" if history.description else None,
        f"steps: {', '.join(steps)}" if steps else None,
        f"workload: {_compact(history.workload)}" if history.workload else None,
    )
    payload = history.base(event) | {
        "kind": "execution",
        "status": status,
        "step": failed_step,
        "duration_ms": duration,
        "steps": steps,
        "error": _error_parts(error)[0] if error else None,
        "text": text,
    }
    return Document("executions", history.execution_id, text, payload)


def execution_documents(
    events: Sequence[Event], playbook: Playbook | None, wanted: Iterable[str] | None = None
) -> list[Document]:
    """The documents of one execution's history; only those of the events whose ids are
    in ``wanted`` when it is given. ``playbook`` (its catalog version) adds step
    descriptions, inputs and the playbook's description."""
    if not events:
        return []
    keep = set(wanted) if wanted is not None else None
    history = _History.of(events, playbook)
    documents: list[Document] = []
    for event in events:
        if keep is not None and event.event_id not in keep:
            continue
        if not produces_documents(event) or event.event_type == ev.PLAYBOOK_REGISTERED:
            continue
        if event.event_type == ev.STEP_FINISHED:
            documents.append(_step(history, event))
            if event.status == ev.STATUS_ERROR:
                documents.append(_failure(history, event, final=True))
        elif event.event_type in (ev.RETRY_PROCESSED, ev.RETRY_STARTED):
            documents.append(_failure(history, event, final=False))
        elif event.event_type == ev.PLAYBOOK_PROCESSED:
            documents.append(_execution(history, event))
    return documents


def playbook_document(entry: CatalogEntry, playbook: Playbook | None) -> Document:
    """The document of one catalog version: what it is for and what it does."""
    lines = [f"playbook {entry.name} ({entry.path})"]
    description = entry.description or (playbook.metadata.description if playbook else None)
    if description:
        lines.append(description)
    steps: list[str] = []
    kinds: list[str] = []
    if playbook is not None:
        for step in playbook.workflow:
            tool_kinds = [tool.kind for tool in step.tools]
            kinds.extend(tool_kinds)
            descs = [d for d in (step.desc, *(tool.desc for tool in step.tools)) if d]
            line = f"- {step.step} ({'+'.join(tool_kinds)})"
            if descs:
                line += ": " + "; ".join(descs)
            steps.append(line)
        if playbook.metadata.tags:
            lines.append("tags: " + ", ".join(playbook.metadata.tags))
    lines.extend(["steps:", *steps] if steps else [])
    text = "\n".join(lines)
    payload = {
        "kind": "playbook",
        "playbook_path": entry.path,
        "playbook_version": entry.version,
        "execution_id": None,
        "name": entry.name,
        "description": description,
        "steps": [step.step for step in playbook.workflow] if playbook else [],
        "tool_kinds": sorted(set(kinds)),
        "registered_at": entry.registered_at,
        "source": entry.source,
        "text": text,
    }
    return Document("playbooks", f"{entry.path}@{entry.version}", text, payload)
