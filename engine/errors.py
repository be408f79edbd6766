"""Errors raised by the engine.

Every message says what is wrong and what to do about it.

    NoetlError
    ├── PlaybookInvalid          the playbook failed parsing, validation or static checks
    ├── TemplateError            a template could not be rendered (names step, field, expression)
    ├── NotFound                 an execution, playbook version or approval does not exist
    ├── Conflict                 the request contradicts stored state (e.g. deciding twice)
    ├── StoreError               an event or catalog store failed
    └── ToolConfigError          a tool's configuration cannot be run (unknown credential, ...)
"""

from __future__ import annotations

from dataclasses import dataclass, field


class NoetlError(Exception):
    """Base of every error the engine raises on purpose."""


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem found in a playbook: where it is, what is wrong, how to fix it."""

    path: str
    message: str
    line: int | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = self.path or "<playbook>"
        if self.line is not None:
            where = f"{where} (line {self.line})"
        text = f"{where}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "line": self.line, "message": self.message, "hint": self.hint}


@dataclass
class PlaybookInvalid(NoetlError):
    """The playbook cannot be run; ``issues`` lists every problem found."""

    issues: list[Issue] = field(default_factory=list)
    source: str | None = None

    def __str__(self) -> str:
        head = f"{self.source}: " if self.source else ""
        count = len(self.issues)
        lines = [f"{head}playbook is invalid ({count} problem{'s' if count != 1 else ''})"]
        lines += [f"  - {issue}" for issue in self.issues]
        return "\n".join(lines)


class TemplateError(NoetlError):
    """A template failed to render; the message names the step, field and expression."""


class NotFound(NoetlError):
    """Something asked for does not exist."""


class Conflict(NoetlError):
    """The request contradicts what is already stored."""


class StoreError(NoetlError):
    """A store could not read or write."""


class ToolConfigError(NoetlError):
    """A tool's configuration cannot be run as given."""
