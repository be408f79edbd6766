"""Embedded credential providers: where keychain names resolve to secret values.

A playbook names the credentials it uses (``keychain: [{name: warehouse, kind:
postgres}]``, ``auth: warehouse``); the values live outside it, in one of:

    FileCredentialProvider     a JSON file ``{name: {"kind": ..., "data": {...}}}``, mode 0600
    EnvCredentialProvider      ``NOETL_CREDENTIAL_<NAME>`` holding a JSON object
    MemoryCredentialProvider   a mapping given in code (tests, embedding)
    ChainCredentialProvider    the first of several providers that knows the name

The store the CLI and the API manage is ``credential_store.EncryptedCredentialStore``
(encrypted in a SQL table); the plain JSON file remains readable for existing installs.

``get`` returns a :class:`Credential`, a read-only mapping whose ``repr`` masks every
value and which ``json.dumps`` refuses, so a credential cannot slip into a log line or
an event by accident. No message raised here ever contains a value.

    ToolConfigError (engine.errors)
    └── CredentialNotFound      the name is not defined by the provider(s) asked
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ToolConfigError
from engine.ports import CredentialProvider

ENV_PREFIX = "NOETL_CREDENTIAL_"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class CredentialNotFound(ToolConfigError):
    """No provider defines the credential; the message says how to add it."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"credential {name!r} is not defined; add it with "
            f"`noetl-agent credentials set {name} --kind <kind> ...` "
            f"or set {env_var_name(name)} to a JSON object of its fields"
        )


class Credential(Mapping[str, Any]):
    """The fields of one credential; read-only, and its ``repr`` never shows a value."""

    __slots__ = ("_fields", "kind", "name")

    def __init__(self, name: str, kind: str, fields: Mapping[str, Any]) -> None:
        self.name = name
        self.kind = kind
        self._fields = dict(fields)

    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        masked = ", ".join(f"{key}=***" for key in self._fields)
        return f"Credential(name={self.name!r}, kind={self.kind!r}, {masked})"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class CredentialInfo:
    """A credential's name and kind, as listings show it (never its values)."""

    name: str
    kind: str


def env_var_name(name: str) -> str:
    """The environment variable ``EnvCredentialProvider`` reads for ``name``."""
    return ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", name.upper())


def check_name(name: str) -> None:
    """Raise ``ToolConfigError`` unless ``name`` can name a credential."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ToolConfigError(
            f"invalid credential name {name!r}: use letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )


def checked_entry(name: str, kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """``{"kind", "data"}`` as JSON stores it; ``ToolConfigError`` (never showing a value)
    for a bad name or kind, or data that is not a non-empty mapping of JSON values."""
    check_name(name)
    if not isinstance(kind, str) or not kind.strip():
        raise ToolConfigError(f"credential {name!r}: kind must be a non-empty string")
    if not isinstance(data, Mapping) or not data:
        raise ToolConfigError(f"credential {name!r}: data must be a non-empty mapping of fields")
    try:
        entry: dict[str, Any] = json.loads(json.dumps({"kind": kind, "data": dict(data)}))
    except (TypeError, ValueError):
        raise ToolConfigError(
            f"credential {name!r}: every field must be a JSON value "
            "(string, number, boolean, null, list or object)"
        ) from None
    return entry


def _split_entry(name: str, entry: Any, where: str) -> tuple[str, Mapping[str, Any]]:
    """``(kind, fields)`` of a stored entry; ``{"kind", "data"}`` or a flat object."""
    if not isinstance(entry, Mapping):
        raise ToolConfigError(f"credential {name!r} in {where} must be a JSON object of its fields")
    data = entry.get("data")
    if isinstance(data, Mapping) and set(entry) <= {"kind", "data"}:
        return str(entry.get("kind") or "generic"), data
    fields = {key: value for key, value in entry.items() if key != "kind"}
    return str(entry.get("kind") or "generic"), fields


class MemoryCredentialProvider:
    """Credentials held in memory: ``{name: {"kind": ..., "data": {...}}}`` or flat fields."""

    def __init__(self, entries: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._entries: dict[str, tuple[str, dict[str, Any]]] = {}
        for name, entry in (entries or {}).items():
            kind, fields = _split_entry(name, entry, "memory")
            self._entries[name] = (kind, dict(fields))

    def __repr__(self) -> str:
        return f"MemoryCredentialProvider(names={sorted(self._entries)!r})"

    async def get(self, name: str) -> Credential:
        """Return the credential; raise ``CredentialNotFound`` for an unknown name."""
        try:
            kind, fields = self._entries[name]
        except KeyError:
            raise CredentialNotFound(name) from None
        return Credential(name, kind, fields)

    def set(self, name: str, kind: str, data: Mapping[str, Any]) -> None:
        """Define or replace ``name``."""
        check_name(name)
        self._entries[name] = (kind, dict(data))

    def delete(self, name: str) -> bool:
        """Remove ``name``; return whether it was defined."""
        return self._entries.pop(name, None) is not None

    def list(self) -> list[CredentialInfo]:
        """Names and kinds, sorted by name."""
        return [CredentialInfo(name, kind) for name, (kind, _) in sorted(self._entries.items())]


class FileCredentialProvider:
    """Credentials in a JSON file readable by its owner only (mode 0600).

    The file maps each name to ``{"kind": ..., "data": {...}}``. It is re-read when it
    changes on disk, so ``noetl-agent credentials set`` takes effect without a restart.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._cache: dict[str, Any] | None = None
        self._cache_stamp: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"FileCredentialProvider(path={str(self.path)!r})"

    def _load(self) -> dict[str, Any]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        stamp = (stat.st_mtime_ns, stat.st_size)
        if self._cache is not None and self._cache_stamp == stamp:
            return self._cache
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as e:
            raise ToolConfigError(
                f"cannot read credentials file {self.path}: {e.strerror}; "
                "check that it exists and that you own it"
            ) from e
        try:
            entries = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as e:
            # The decoder's message carries a position only, never the file's content.
            raise ToolConfigError(
                f"credentials file {self.path} is not valid JSON (line {e.lineno}, "
                f"column {e.colno}); fix it or remove it and add the credentials again"
            ) from None
        if not isinstance(entries, dict):
            raise ToolConfigError(
                f"credentials file {self.path} must hold a JSON object mapping names to "
                "credentials; fix it or remove it and add the credentials again"
            )
        self._cache, self._cache_stamp = entries, stamp
        return entries

    def _store(self, entries: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".credentials-", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(entries, handle, indent=2, sort_keys=True)
                handle.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._cache = None

    async def get(self, name: str) -> Credential:
        """Return the credential; raise ``CredentialNotFound`` for an unknown name."""
        entries = self._load()
        if name not in entries:
            raise CredentialNotFound(name)
        kind, fields = _split_entry(name, entries[name], str(self.path))
        return Credential(name, kind, fields)

    def set(self, name: str, kind: str, data: Mapping[str, Any]) -> None:
        """Define or replace ``name``; raise ``ToolConfigError`` if ``data`` is not JSON."""
        entry = checked_entry(name, kind, data)
        entries = dict(self._load())
        entries[name] = entry
        self._store(entries)

    def delete(self, name: str) -> bool:
        """Remove ``name``; return whether it was defined."""
        entries = dict(self._load())
        if entries.pop(name, None) is None:
            return False
        self._store(entries)
        return True

    def list(self) -> list[CredentialInfo]:
        """Names and kinds, sorted by name."""
        result = []
        for name, entry in sorted(self._load().items()):
            kind = entry.get("kind") if isinstance(entry, Mapping) else None
            result.append(CredentialInfo(name, str(kind or "generic")))
        return result


class EnvCredentialProvider:
    """Credentials from ``NOETL_CREDENTIAL_<NAME>`` environment variables.

    The name is upper-cased and every character other than a letter or digit becomes
    ``_`` (``pg-local`` → ``NOETL_CREDENTIAL_PG_LOCAL``). The value is a JSON object of
    the fields, or ``{"kind": ..., "data": {...}}``.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ

    def __repr__(self) -> str:
        return "EnvCredentialProvider()"

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    async def get(self, name: str) -> Credential:
        """Return the credential; raise ``CredentialNotFound`` if the variable is unset."""
        var = env_var_name(name)
        raw = self.environ.get(var)
        if raw is None:
            raise CredentialNotFound(name)
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError:
            raise ToolConfigError(
                f"{var} is not valid JSON; set it to a JSON object such as "
                '{"user": "...", "password": "..."}'
            ) from None
        kind, fields = _split_entry(name, entry, var)
        return Credential(name, kind, fields)

    def list(self) -> list[CredentialInfo]:
        """Names (lower-cased variable suffixes) and kinds, sorted by name."""
        result = []
        for var, raw in sorted(self.environ.items()):
            if not var.startswith(ENV_PREFIX) or len(var) == len(ENV_PREFIX):
                continue
            try:
                entry = json.loads(raw)
            except json.JSONDecodeError:
                entry = None
            kind = entry.get("kind") if isinstance(entry, dict) else None
            result.append(CredentialInfo(var[len(ENV_PREFIX) :].lower(), str(kind or "generic")))
        return result


class ChainCredentialProvider:
    """Asks each provider in order; the first that defines the name wins."""

    def __init__(self, providers: Sequence[CredentialProvider]) -> None:
        self.providers = list(providers)

    def __repr__(self) -> str:
        return f"ChainCredentialProvider({self.providers!r})"

    async def get(self, name: str) -> Mapping[str, Any]:
        """Return the first provider's credential; ``CredentialNotFound`` if none has it."""
        for provider in self.providers:
            try:
                return await provider.get(name)
            except CredentialNotFound:
                continue
        raise CredentialNotFound(name)
