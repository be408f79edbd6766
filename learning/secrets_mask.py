"""Masking secrets in documents before they are embedded or stored.

The engine already masks every credential it resolved in the events it stores, but an
event may hold a secret the engine never resolved in that process: a password pasted into
a workload, quoted by a failing script, or stored before the credential was. So the
indexer learns the value of every credential its sources can list (the encrypted store,
the legacy file, the environment) and masks them, with the engine's :class:`Redactor`,
in each document's text and payload before the model or Qdrant sees it.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from engine.errors import ToolConfigError
from engine.runtime.redaction import Redactor
from learning.documents import Document
from learning.errors import SecretsUnavailable


class ListableCredentials(Protocol):
    """A credential provider that can also list its names (sync or async ``list``)."""

    async def get(self, name: str) -> Mapping[str, Any]: ...

    def list(self) -> Any: ...


async def learn_credentials(
    redactor: Redactor,
    sources: Iterable[ListableCredentials],
    *,
    destination: str = "the search index",
) -> int:
    """Teach ``redactor`` every credential of ``sources``; return how many were read.

    Raises ``SecretsUnavailable`` naming a credential that cannot be read (wrong key,
    malformed): its value could not be masked, so nothing should be written to
    ``destination``."""
    learned = 0
    for source in sources:
        listing = source.list()
        if inspect.isawaitable(listing):
            listing = await listing
        for info in listing:
            try:
                fields = await source.get(info.name)
            except ToolConfigError as exc:
                raise SecretsUnavailable(
                    f"cannot read credential {info.name!r} to mask it in {destination} "
                    f"({exc}); nothing was written there: give the key it was stored with "
                    "(NOETL_CREDENTIAL_KEY) or delete the credential"
                ) from exc
            redactor.learn(dict(fields))
            learned += 1
    return learned


def redact(document: Document, redactor: Redactor) -> Document:
    """``document`` with every learned secret masked in its text and payload."""
    if not redactor.active:
        return document
    return Document(
        document.kind,
        document.key,
        redactor.text(document.text),
        redactor.value(document.payload),
        {name: redactor.text(text) for name, text in document.aspects.items()},
    )
