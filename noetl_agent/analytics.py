"""Opening the analytics service for this installation.

The store is a ClickHouse server when ``NOETL_CLICKHOUSE_URL`` is set
(``http://user:password@host:8123``), else chDB keeping its data in the ``analytics``
folder beside the SQLite event log (``$NOETL_HOME/analytics``; with a PostgreSQL event log,
under ``$NOETL_HOME``). Exported events pass through the process redactor, which has also
learned every credential of the local encrypted store it can decrypt: a secret value that
a stored event still held (written by an older version, or by a worker that never saw
the credential) is masked before it reaches analytics.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from engine.adapters.sqlite.stores import SqliteEventStore
from engine.errors import NoetlError
from engine.ports import EventStore
from engine.runtime.redaction import Redactor, process_redactor
from noetl_agent.config import noetl_home

if TYPE_CHECKING:
    from learning.analytics.service import Analytics

logger = logging.getLogger(__name__)
URL_ENV = "NOETL_CLICKHOUSE_URL"
FOLDER = "analytics"
# Credentials already taught to a redactor, per (redactor, home): a redactor never forgets,
# so each is decrypted once per process.
_learned: dict[tuple[int, str], set[str]] = {}


def analytics_url() -> str | None:
    """The ClickHouse server URL from ``NOETL_CLICKHOUSE_URL``, or None for chDB."""
    return os.environ.get(URL_ENV) or None


def installation_home(events: EventStore) -> Path:
    """The folder of the installation ``events`` belong to: the SQLite file's folder,
    else ``$NOETL_HOME``."""
    if isinstance(events, SqliteEventStore):
        return Path(events.path).resolve().parent
    return noetl_home()


async def open_analytics(
    events: EventStore, home: Path | None = None, *, redactor: Redactor | None = None
) -> Analytics:
    """The analytics service over ``events`` for the installation under ``home`` (default:
    :func:`installation_home`). Close it after use: chDB locks its folder while open.

    Raises ``AnalyticsUnavailable`` when the store cannot be opened (see its message)."""
    from learning.analytics.service import Analytics
    from learning.analytics.store import open_store

    root = home or installation_home(events)
    redactor = redactor or process_redactor()
    await learn_local_credentials(redactor, root)
    store = await asyncio.to_thread(open_store, analytics_url(), root / FOLDER)
    return Analytics(events, store, redactor=redactor)


async def learn_local_credentials(redactor: Redactor, home: Path) -> int:
    """Teach ``redactor`` every credential of the encrypted store under ``home`` that it
    has not learned yet and that can be decrypted; return how many it learned now. A store
    that is missing or cannot be read teaches nothing."""
    if not (home / "noetl.db").exists():
        return 0
    from noetl_agent.local import local_credential_store

    known = _learned.setdefault((id(redactor), str(home.resolve())), set())
    learned = 0
    try:
        store = local_credential_store(home)
        for info in await store.list():
            if info.name in known:
                continue
            try:
                redactor.learn(await store.get(info.name))
            except NoetlError as exc:
                logger.debug("credential %s not learned for redaction: %s", info.name, exc)
                continue
            known.add(info.name)
            learned += 1
    except NoetlError as exc:
        logger.debug("local credentials not learned for redaction: %s", exc)
    return learned
