"""Redaction: secret values never reach the event log or the logs.

A :class:`Redactor` learns the values of every credential resolved through a
:class:`RedactingCredentialProvider` (the wrapper the engine puts around its provider)
and replaces each occurrence of them with ``***``:

- in events, before they are stored: every string of the payload, recursively, dict keys
  included (an http response echoing a token, an error message quoting a password);
- in log records, through :class:`RedactingFilter`, which ``install_log_redaction``
  applies to every record the process creates (message, arguments and traceback).

What is learned from a credential's fields: every string value of at least
``MIN_SECRET_LENGTH`` characters, nested mappings and lists included, and the encodings
under which it commonly travels: JSON-escaped, percent-encoded, base64 (alone, and as
``user:password`` the way HTTP basic authentication sends it), and the user and
password parts of a URL or DSN. Shorter values are not learned: masking every ``abc``
in a log would hide more than it protects. A value that travels in some other form
(hashed, split, partly quoted) cannot be recognised.

The engine redacts an event before its state machine sees it, so the machine's state is
what the log replays: a secret that a step returns reaches later steps as ``***``.

Nothing is forgotten during the process's life: a value once resolved stays masked.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

from engine.core.events import Event
from engine.ports import CredentialProvider

MASK = "***"
MIN_SECRET_LENGTH = 4
_USER_FIELDS = ("username", "user", "db_user", "login")
_PASSWORD_FIELDS = ("password", "db_password", "pass", "passwd", "secret")
_URL_START = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def _b64(text: str) -> list[str]:
    """Base64 forms of ``text``, padded and not (the longer is matched first)."""
    raw = text.encode("utf-8")
    forms = [base64.b64encode(raw).decode("ascii"), base64.urlsafe_b64encode(raw).decode("ascii")]
    return forms + [form.rstrip("=") for form in forms]


class Redactor:
    """Learns secret values and masks them in text, nested values and events.

    Thread-safe: learning builds a new pattern and swaps it in, so a concurrent
    redaction uses either the old pattern or the new one.
    """

    def __init__(self, *, min_length: int = MIN_SECRET_LENGTH) -> None:
        self.min_length = min_length
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        # How many, never which.
        return f"Redactor(secrets={len(self._secrets)})"

    @property
    def active(self) -> bool:
        """Whether anything has been learned (until then redacting is a no-op)."""
        return self._pattern is not None

    # ------------------------------------------------------------------ learning

    def add(self, secret: str) -> None:
        """Mask ``secret`` and its common encodings from now on (ignored when short)."""
        self._extend(self._forms(secret))

    def learn(self, fields: Mapping[str, Any]) -> None:
        """Mask every string value of a credential's fields (see the module docstring)."""
        found: set[str] = set()
        self._collect(fields, found)
        self._extend(found)

    def _collect(self, value: Any, found: set[str]) -> None:
        if isinstance(value, str):
            found.update(self._forms(value))
            if _URL_START.match(value):
                found.update(self._url_parts(value))
        elif isinstance(value, Mapping):
            for item in value.values():
                self._collect(item, found)
            user = next((value[k] for k in _USER_FIELDS if isinstance(value.get(k), str)), None)
            password = next(
                (value[k] for k in _PASSWORD_FIELDS if isinstance(value.get(k), str)), None
            )
            if user is not None and password:
                found.update(form for form in _b64(f"{user}:{password}") if form)
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                self._collect(item, found)

    def _url_parts(self, url: str) -> set[str]:
        try:
            parts = urlsplit(url)
            user, password = parts.username, parts.password
        except ValueError:
            return set()
        found: set[str] = set()
        for part in (user, password):
            if part:
                found.update(self._forms(part))
                found.update(self._forms(unquote(part)))
        return found

    def _forms(self, secret: str) -> set[str]:
        if len(secret) < self.min_length:
            return set()
        forms = {
            secret,
            json.dumps(secret)[1:-1],
            json.dumps(secret, ensure_ascii=False)[1:-1],
            quote(secret, safe=""),
            quote_plus(secret, safe=""),
            *_b64(secret),
        }
        return {form for form in forms if len(form) >= self.min_length}

    def _extend(self, forms: Iterable[str]) -> None:
        new = set(forms) - self._secrets
        if not new:
            return
        with self._lock:
            self._secrets |= new
            # Longest first, so a secret containing another is masked whole.
            ordered = sorted(self._secrets, key=lambda s: (-len(s), s))
            self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    # ------------------------------------------------------------------ redacting

    def text(self, text: str) -> str:
        """``text`` with every learned secret replaced by ``***``."""
        pattern = self._pattern
        if pattern is None or not pattern.search(text):
            return text
        return pattern.sub(MASK, text)

    def value(self, value: Any) -> Any:
        """``value`` with secrets masked in every string it holds (mappings, lists and
        tuples are walked; keys too). Returns ``value`` itself when nothing changed."""
        pattern = self._pattern
        if pattern is None:
            return value
        return self._walk(value, pattern)

    def _walk(self, value: Any, pattern: re.Pattern[str]) -> Any:
        if isinstance(value, str):
            return pattern.sub(MASK, value) if pattern.search(value) else value
        if isinstance(value, dict):
            changed = False
            result: dict[Any, Any] = {}
            for key, item in value.items():
                new_key = self._walk(key, pattern) if isinstance(key, str) else key
                new_item = self._walk(item, pattern)
                changed = changed or new_key is not key or new_item is not item
                result[new_key] = new_item
            return result if changed else value
        if isinstance(value, list | tuple):
            items = [self._walk(item, pattern) for item in value]
            if all(new is old for new, old in zip(items, value, strict=True)):
                return value
            return items if isinstance(value, list) else tuple(items)
        return value

    def event(self, event: Event) -> Event:
        """``event`` with its payload redacted (the same object when nothing changed)."""
        payload = self.value(event.payload)
        if payload is event.payload:
            return event
        return replace(event, payload=payload)

    def events(self, events: list[Event]) -> list[Event]:
        """Every event redacted; ``events`` itself when nothing has been learned."""
        if self._pattern is None:
            return events
        return [self.event(event) for event in events]


class RedactingCredentialProvider:
    """A credential provider that teaches ``redactor`` every credential it hands out."""

    def __init__(self, provider: CredentialProvider, redactor: Redactor) -> None:
        self.provider = provider
        self.redactor = redactor

    def __repr__(self) -> str:
        return f"RedactingCredentialProvider({self.provider!r})"

    async def get(self, name: str) -> Mapping[str, Any]:
        """The provider's credential, after its values have been learned."""
        fields = await self.provider.get(name)
        self.redactor.learn(fields)
        return fields


_PROCESS_REDACTOR = Redactor()


def process_redactor() -> Redactor:
    """The redactor shared by the composition root of this process (engine and logs)."""
    return _PROCESS_REDACTOR


# ---------------------------------------------------------------------- logging

_TRACEBACKS = logging.Formatter()


def redact_record(record: logging.LogRecord, redactor: Redactor) -> None:
    """Mask secrets in ``record``'s message, arguments, traceback and stack, in place."""
    if not redactor.active:
        return
    try:
        message = record.getMessage()
    except Exception:  # a malformed call; the handler reports it as usual
        return
    clean = redactor.text(message)
    if clean != message and not _mask_arguments(record, redactor):
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        record.exc_text = redactor.text(_TRACEBACKS.formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = redactor.text(record.exc_text)
    if record.stack_info:
        record.stack_info = redactor.text(record.stack_info)


def _mask_arguments(record: logging.LogRecord, redactor: Redactor) -> bool:
    """Mask the format string and each argument, keeping the arguments' shape (formatters
    such as uvicorn's access log unpack them); False, changing nothing, when the message
    would still show a secret that way (one split between format and argument)."""
    if not isinstance(record.args, tuple) or not isinstance(record.msg, str):
        return False
    msg, args = record.msg, record.args
    record.msg = redactor.text(msg)
    record.args = tuple(redactor.text(arg) if isinstance(arg, str) else arg for arg in args)
    try:
        message = record.getMessage()
    except Exception:
        message = None
    if message is not None and redactor.text(message) == message:
        return True
    record.msg, record.args = msg, args
    return False


class RedactingFilter(logging.Filter):
    """A logging filter that masks learned secrets in each record (never drops one)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record, self.redactor)
        return True


_installed: dict[int, RedactingFilter] = {}
_install_lock = threading.Lock()


def install_log_redaction(redactor: Redactor | None = None) -> RedactingFilter:
    """Pass every log record this process creates through a :class:`RedactingFilter`.

    Applied when the record is made (through the log record factory), so it covers every
    logger and handler, including those configured later (uvicorn's). Installing the
    same redactor again changes nothing.
    """
    redactor = redactor or process_redactor()
    with _install_lock:
        existing = _installed.get(id(redactor))
        if existing is not None:
            return existing
        redacting = RedactingFilter(redactor)
        make = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make(*args, **kwargs)
            redacting.filter(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed[id(redactor)] = redacting
        return redacting
