"""Opening the analytics service for this installation.

The store is a ClickHouse server when ``NOETL_CLICKHOUSE_URL`` is set
(``http://user:password@host:8123``), else chDB keeping its data in the ``analytics``
folder beside the SQLite event log (``$NOETL_HOME/analytics``; with a PostgreSQL event log,
under ``$NOETL_HOME``). Exported events pass through the process redactor, which has also
learned every credential the local stack resolves (the encrypted store, the legacy file,
the environment; the same sources the search index masks): a secret value that a stored
event still held (written by an older version, or by a worker that never saw the
credential) is masked before it reaches analytics. A credential that cannot be read stops
the export rather than risk an unmasked value.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

from engine.adapters.sqlite.stores import SqliteEventStore
from engine.ports import EventStore
from engine.runtime.redaction import Redactor, process_redactor
from noetl_agent.config import noetl_home

if TYPE_CHECKING:
    from learning.analytics.service import Analytics

URL_ENV = "NOETL_CLICKHOUSE_URL"
FOLDER = "analytics"


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
    """Teach ``redactor`` every credential the stack under ``home`` resolves; return how
    many. Raises ``SecretsUnavailable`` naming one that cannot be read."""
    from engine.adapters.credential_store import EncryptedCredentialStore
    from learning.secrets_mask import learn_credentials
    from noetl_agent.local import local_credential_sources

    sources = local_credential_sources(home)
    if not (home / "noetl.db").exists():  # no embedded store here: do not create one
        sources = [s for s in sources if not isinstance(s, EncryptedCredentialStore)]
    return await learn_credentials(redactor, sources, destination="analytics")
