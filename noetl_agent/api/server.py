"""Serving the API on the embedded stack: one process, the SQLite file under ``home``.

On start the engine picks up every execution a stopped process left running (and paused
ones whose approval timed out), then uvicorn serves the app on the same event loop.
SIGINT and SIGTERM stop the server gracefully; executions still running stay ``running``
in the log and the next start finishes them.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn

from engine.adapters.sqlite.stores import SqliteDatabase
from noetl_agent.api.app import create_app
from noetl_agent.api.middleware import DEFAULT_MAX_BODY_BYTES
from noetl_agent.local import local_engine
from noetl_agent.tokens import SqliteTokenStore

logger = logging.getLogger(__name__)
Announce = Callable[[str], None]


class _Server(uvicorn.Server):
    """uvicorn's server without re-raising the stop signal after shutdown, so the engine
    behind it closes cleanly."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        stops = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in stops}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


async def serve(
    home: Path,
    host: str,
    port: int,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    announce: Announce = logger.info,
) -> None:
    """Serve the API for the state under ``home`` until SIGINT or SIGTERM."""
    async with local_engine(home) as engine:
        db = SqliteDatabase.open(home / "noetl.db")
        try:
            tokens = SqliteTokenStore(db)
            if not await tokens.list():
                announce(
                    "no API tokens yet: every /api request will get 401 until you create one "
                    "with `noetl-agent tokens create --name NAME --kind human --role admin`"
                )
            engine.prewarm()
            recovered = await engine.recover()
            if recovered:
                announce(f"resumed {len(recovered)} execution(s): {', '.join(recovered)}")
            app = create_app(engine, tokens, max_body_bytes=max_body_bytes)
            config = uvicorn.Config(app, host=host, port=port, lifespan="off", log_level="info")
            announce(f"serving http://{host}:{port} (OpenAPI at /docs) for {home}")
            await _Server(config).serve()
        finally:
            db.close()
