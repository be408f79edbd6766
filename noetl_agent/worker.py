"""`noetl-agent worker`: a distributed worker process, put together from its parts.

The worker learns of commands from NATS JetStream, claims and reports them through the
API server with a token that holds the ``worker`` role, and runs the tools here. Tool
credentials resolve, in order, from the server (the credentials stored there with
``noetl-agent credentials set --server``, handed out only for the command the worker
holds), then on the worker's host from the encrypted store of ``$NOETL_HOME``, a plain
``credentials.json`` there, and ``NOETL_CREDENTIAL_<NAME>`` variables; their values are
masked in every event before it is sent.

Both services are checked before the first note is taken, so a wrong address or token is
one clear error at start-up rather than a stream of failed claims.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from engine.adapters.credentials import ChainCredentialProvider
from engine.adapters.nats.bus import NatsCommandBus, check_pool
from engine.runtime.redaction import process_redactor
from engine.worker.credentials import ServerCredentialProvider
from engine.worker.remote import HttpWorkerRemote
from engine.worker.service import WorkerService
from noetl_agent.local import local_credential_sources

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_STREAM = "NOETL_COMMANDS"
DEFAULT_SUBJECT_PREFIX = "noetl.commands"


def default_worker_id() -> str:
    """``HOSTNAME-PID``: unique among the workers of a cluster at any one time."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    server_url: str
    token: str
    nats_url: str = DEFAULT_NATS_URL
    pool: str = "cpu"
    concurrency: int = 4
    lease_seconds: float = 30.0
    grace: float = 30.0
    worker_id: str = ""
    stream: str = DEFAULT_STREAM
    subject_prefix: str = DEFAULT_SUBJECT_PREFIX


async def run_worker(settings: WorkerSettings, announce: Callable[[str], None]) -> None:
    """Serve the pool until SIGTERM or SIGINT (a second one stops at once).

    Raises ``ValueError`` for an unusable pool name, ``ServerUnreachable`` or
    ``StoreError`` when the API server or NATS cannot be reached, and
    ``WorkerUnauthorized`` when the token lacks the worker role."""
    check_pool(settings.pool)
    worker_id = settings.worker_id or default_worker_id()
    remote = HttpWorkerRemote(settings.server_url, settings.token, worker_id=worker_id)
    credentials = ChainCredentialProvider(
        [ServerCredentialProvider(remote), *local_credential_sources()]
    )
    try:
        await remote.check()
        bus = await NatsCommandBus.connect(
            settings.nats_url,
            stream=settings.stream,
            subject_prefix=settings.subject_prefix,
            ack_wait=settings.lease_seconds,
        )
        try:
            service = WorkerService(
                bus,
                remote,
                settings.pool,
                settings.concurrency,
                settings.lease_seconds,
                credentials=credentials,
                redactor=process_redactor(),
                grace=settings.grace,
            )
            announce(
                f"worker {worker_id}: pool {settings.pool}, concurrency {settings.concurrency},"
                f" server {settings.server_url}, NATS {settings.nats_url}; SIGTERM or Ctrl-C"
                f" finishes running commands (up to {settings.grace:g}s) and stops"
            )
            await service.run(signals=True)
        finally:
            await bus.aclose()
    finally:
        await remote.aclose()


def configure_logging(debug: bool) -> None:
    """Log lines to stderr: what a worker does is visible in its container's log."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpcore").setLevel(logging.INFO)  # one line per socket event
    if not debug:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request
