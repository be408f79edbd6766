"""Credentials a distributed worker gets from the server, for the command it runs.

``ServerCredentialProvider`` asks the API server for a credential on behalf of the
command being run in the current task (``running_command``, set by ``WorkerService``
around each run): the server hands out only what that command's tools name, and only
while this worker's claim on it is active. A credential the server does not keep is
``CredentialNotFound`` here, so a ``ChainCredentialProvider`` goes on to the worker's own
sources. An unreachable server is logged and treated the same way (the worker's own
sources may still know the name; the claim's heartbeat notices the outage anyway).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar

from engine.adapters.credentials import Credential, CredentialNotFound
from engine.worker.remote import HttpWorkerRemote, ServerUnreachable

__all__ = ["ServerCredentialProvider", "running_command"]

logger = logging.getLogger(__name__)
_COMMAND: ContextVar[str | None] = ContextVar("noetl_running_command", default=None)


@contextlib.contextmanager
def running_command(command_id: str) -> Iterator[None]:
    """Within this block (and tasks created in it) tools run for ``command_id``."""
    token = _COMMAND.set(command_id)
    try:
        yield
    finally:
        _COMMAND.reset(token)


class ServerCredentialProvider:
    """The server's credential store, as the held command may read it."""

    def __init__(self, remote: HttpWorkerRemote) -> None:
        self._remote = remote

    def __repr__(self) -> str:
        return f"ServerCredentialProvider({self._remote.base_url!r})"

    async def get(self, name: str) -> Credential:
        """The credential; ``CredentialNotFound`` when the server does not hand it out.

        Raises ``ClaimLost`` when the server says the claim is not this worker's."""
        command_id = _COMMAND.get()
        if command_id is None:
            raise CredentialNotFound(name)
        try:
            answer = await self._remote.credential(command_id, name)
        except ServerUnreachable as exc:
            logger.warning("credential %r from the server: %s; trying local sources", name, exc)
            raise CredentialNotFound(name) from None
        if answer is None:
            raise CredentialNotFound(name)
        return Credential(name, str(answer.get("kind") or "generic"), answer["data"])
