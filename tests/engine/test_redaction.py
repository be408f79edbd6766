"""Secret values never reach the event log or the logs.

The end-to-end cases carry a real credential into a payload: an http step whose server
echoes the Authorization header (bearer, and basic as base64), a 401 whose body quotes
it into the error message, and a postgres step whose DSN has the password in the user's
place, which the server's error quotes back. Each runs on the embedded engine with the
encrypted store, and the stored events (and the SQLite file) are searched for the secret.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from uvicorn.logging import AccessFormatter

from engine.adapters.credential_store import KEY_ENV, CredentialKey, EncryptedCredentialStore
from engine.adapters.credentials import MemoryCredentialProvider
from engine.adapters.sqlite.stores import SqliteDatabase
from engine.core import events as ev
from engine.core.events import Event
from engine.runtime.embedded import Engine
from engine.runtime.redaction import (
    MASK,
    RedactingCredentialProvider,
    RedactingFilter,
    Redactor,
    install_log_redaction,
    redact_record,
)
from tests.conformance.conftest import require_postgres
from tests.echo_server import echo_server

TOKEN = "tok-9f3a-echoed-back"
USER, PASSWORD = "svc-reporting", "pw-77c1-basic"
API_KEY = "key-41d0-header"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


# --- the redactor --------------------------------------------------------------------


def test_learned_values_are_masked_in_text_and_nested_values() -> None:
    redactor = Redactor()
    assert not redactor.active
    payload = {"a": ["x", {"b": "no secret here"}], "n": 3}
    assert redactor.value(payload) is payload
    redactor.learn({"token": TOKEN, "port": 5432, "short": "abc", "nested": {"k": [API_KEY]}})
    assert redactor.active
    assert redactor.text(f"Bearer {TOKEN}!") == f"Bearer {MASK}!"
    assert redactor.text("abc is too short to learn") == "abc is too short to learn"
    assert redactor.value(payload) is payload  # nothing to mask: the same object
    masked = redactor.value({"out": [f"key={API_KEY}", (TOKEN, 1)], TOKEN: None, "n": 3})
    assert masked == {"out": [f"key={MASK}", (MASK, 1)], MASK: None, "n": 3}
    assert TOKEN not in repr(redactor) and API_KEY not in repr(redactor)


def test_common_encodings_of_a_secret_are_masked_too() -> None:
    redactor = Redactor()
    tricky = 'p@ss "w/ord"+1'
    redactor.learn({"username": USER, "password": tricky})
    basic = base64.b64encode(f"{USER}:{tricky}".encode()).decode()
    assert redactor.text(f"Authorization: Basic {basic}") == f"Authorization: Basic {MASK}"
    assert MASK in redactor.text(json.dumps({"echo": tricky}))  # JSON-escaped quotes
    assert redactor.text("postgresql://u:p%40ss%20%22w%2Ford%22%2B1@h/db") == (
        f"postgresql://u:{MASK}@h/db"
    )
    dsn = Redactor()
    dsn.learn({"dsn": "postgresql://etl:hunter2-xyz@db.internal:5432/sales"})
    assert dsn.text('password "hunter2-xyz" rejected') == f'password "{MASK}" rejected'


def test_events_are_redacted_and_untouched_ones_kept() -> None:
    redactor = Redactor()
    event = Event(
        "e1",
        ev.TOOL_PROCESSED,
        "x",
        "2026-01-01T00:00:00Z",
        payload={"output": {"auth": f"Bearer {TOKEN}"}, "error": {"message": TOKEN}},
    )
    assert redactor.events([event])[0] is event
    redactor.add(TOKEN)
    (masked,) = redactor.events([event])
    assert masked.payload == {"output": {"auth": f"Bearer {MASK}"}, "error": {"message": MASK}}
    assert masked.event_id == event.event_id and masked.event_type == event.event_type
    plain = Event("e2", ev.STEP_STARTED, "x", "2026-01-01T00:00:00Z", payload={"n": 1})
    assert redactor.event(plain) is plain


async def test_the_wrapped_provider_teaches_every_credential_it_resolves() -> None:
    redactor = Redactor()
    provider = RedactingCredentialProvider(
        MemoryCredentialProvider({"api": {"kind": "http", "data": {"token": TOKEN}}}), redactor
    )
    assert redactor.text(TOKEN) == TOKEN  # nothing resolved yet
    assert dict(await provider.get("api")) == {"token": TOKEN}
    assert redactor.text(TOKEN) == MASK


def test_the_log_filter_masks_messages_arguments_and_tracebacks() -> None:
    redactor = Redactor()
    redactor.add(TOKEN)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(redactor))
    logger = logging.getLogger("tests.redaction.filter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("calling with %s", f"Bearer {TOKEN}")
        try:
            raise ValueError(f"server said {TOKEN}")
        except ValueError:
            logger.exception("request failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert TOKEN not in text
    assert f"calling with Bearer {MASK}" in text and f"ValueError: server said {MASK}" in text


def test_installed_redaction_covers_every_logger_and_handler() -> None:
    redactor = Redactor()
    assert install_log_redaction(redactor) is install_log_redaction(redactor)
    redactor.add(API_KEY)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("tests.redaction.installed.child")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("header X-Api-Key: %s", API_KEY)
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == f"header X-Api-Key: {MASK}\n"


def test_an_access_log_line_is_masked_and_keeps_the_arguments_uvicorn_unpacks() -> None:
    redactor = Redactor()
    redactor.add("hunter2-secret")
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("10.1.2.3:5000", "GET", "/api/x?token=hunter2-secret", "1.1", 200),
        None,
    )
    redact_record(record, redactor)
    line = AccessFormatter("%(client_addr)s %(request_line)s %(status_code)s").format(record)
    assert line.startswith("10.1.2.3:5000 GET /api/x?token=*** HTTP/1.1 200")
    assert "hunter2" not in line


def test_a_secret_split_between_format_and_argument_is_still_masked() -> None:
    redactor = Redactor()
    redactor.add("hunter2-secret")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "key hunter2-%s", ("secret",), None)
    redact_record(record, redactor)
    assert record.getMessage() == f"key {MASK}"


# --- end to end: the engine with the encrypted store ----------------------------------


@pytest.fixture
def echo() -> Iterator[str]:
    with echo_server() as url:
        yield url


@pytest.fixture
async def store(tmp_path: Path) -> EncryptedCredentialStore:
    key = CredentialKey(secret=Fernet.generate_key().decode(), source=KEY_ENV)
    store = EncryptedCredentialStore.sqlite(tmp_path / "noetl.db", key)
    await store.set("api", "http", {"token": TOKEN})
    await store.set("basic", "http", {"username": USER, "password": PASSWORD})
    await store.set("keyed", "http", {"headers": {"X-Api-Key": API_KEY}})
    return store


@pytest.fixture
async def engine(tmp_path: Path, store: EncryptedCredentialStore) -> AsyncIterator[Engine]:
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    eng = Engine(db.events, db.catalog, credentials=store, lock_dir=tmp_path / "locks")
    try:
        yield eng
    finally:
        await eng.aclose()
        db.close()


def _stored(events: list[Event]) -> str:
    return json.dumps([event.to_dict() for event in events])


async def _run(engine: Engine, playbook: str, **workload: Any) -> tuple[Any, list[Event]]:
    entry = await engine.register(playbook)
    execution_id = await engine.execute(entry.path, workload=workload)
    outcome = await engine.wait(execution_id, timeout=30)
    return outcome, await engine.events.read(execution_id)


ECHO = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: echo, path: tests/redaction/echo}
workload: {base: ""}
workflow:
  - step: bearer
    tool: {kind: http, url: "{{ base }}/echo", auth: api}
    next: {arcs: [{step: basic}]}
  - step: basic
    tool: {kind: http, url: "{{ base }}/echo", auth: basic}
    next: {arcs: [{step: keyed}]}
  - step: keyed
    tool: {kind: http, url: "{{ base }}/echo", auth: keyed}
    next: {arcs: [{step: relay}]}
  - step: relay
    tool:
      kind: noop
      input: {seen: "{{ bearer.json.authorization }}", key: "{{ keyed.json.api_key }}"}
    next: {arcs: [{step: denied}]}
  - step: denied
    tool: {kind: http, url: "{{ base }}/deny", auth: api}
"""


async def test_secrets_echoed_into_outputs_and_errors_are_stored_masked(
    engine: Engine, echo: str, tmp_path: Path
) -> None:
    outcome, events = await _run(engine, ECHO, base=echo)

    assert outcome.status == "failed"
    log = _stored(events)
    for secret in (TOKEN, PASSWORD, BASIC, API_KEY):
        assert secret not in log
        assert secret not in json.dumps(outcome.to_dict())
    done = {
        str(e.step_run_id).split("#")[0]: e.payload
        for e in events
        if e.event_type == ev.TOOL_PROCESSED
    }
    assert done["bearer"]["output"]["json"]["authorization"] == f"Bearer {MASK}"
    assert done["basic"]["output"]["json"]["authorization"] == f"Basic {MASK}"
    assert done["keyed"]["output"]["json"]["api_key"] == MASK
    # What later steps see is what the log replays: the masked value.
    assert done["relay"]["output"] == {"seen": f"Bearer {MASK}", "key": MASK}
    assert f"refused: Bearer {MASK} is not valid here" in done["denied"]["error"]["message"]
    assert outcome.error is not None and MASK in outcome.error["message"]
    # Nor is anything in clear in the database file itself.
    with SqliteDatabase.open(tmp_path / "noetl.db").reading() as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = (tmp_path / "noetl.db").read_bytes()
    assert b"refused: Bearer" in raw  # the events are there ...
    for secret in (TOKEN, PASSWORD, BASIC, API_KEY):
        assert secret.encode() not in raw  # ... without the secrets


async def test_a_secret_in_a_postgres_error_is_stored_masked(tmp_path: Path) -> None:
    await require_postgres()
    misplaced = "pw-5e2b-in-user-slot"
    # The password typed where the user goes: the server's refusal quotes it back.
    provider = MemoryCredentialProvider(
        {
            "pg": {
                "kind": "postgres",
                "data": {"dsn": f"postgresql://{misplaced}@127.0.0.1/postgres"},
            }
        }
    )
    db = SqliteDatabase.open(tmp_path / "noetl.db")
    engine = Engine(db.events, db.catalog, credentials=provider)
    playbook = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: pg, path: tests/redaction/pg}
workflow:
  - step: query
    tool: {kind: postgres, auth: pg, query: "SELECT 1 AS one"}
"""
    try:
        outcome, events = await _run(engine, playbook)
    finally:
        await engine.aclose()
        db.close()
    assert outcome.status == "failed"
    (done,) = [e for e in events if e.event_type == ev.TOOL_PROCESSED]
    message = done.payload["error"]["message"]
    assert f'role "{MASK}" does not exist' in message
    assert misplaced not in _stored(events)


async def test_an_engine_without_credentials_stores_events_unchanged(engine: Engine) -> None:
    bare = Engine(engine.events, engine.catalog)
    assert not bare.redactor.active
    playbook = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: plain, path: tests/redaction/plain}
workflow:
  - step: start
    tool: {kind: noop, input: {text: "tok-9f3a-echoed-back is only a string here"}}
"""
    outcome, events = await _run(bare, playbook)
    await bare.aclose()
    assert outcome.status == "completed"
    assert TOKEN in _stored(events)
