"""The outcome of one tool attempt, as policies and arcs see it (``output``).

``{status: ok|error, data, error: {kind, code, message, retryable}, http: {status}, meta}``
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ErrorKind = Literal["timeout", "connection", "http", "python", "sql", "validation", "cancelled"]


@dataclass(frozen=True, slots=True)
class ToolError:
    kind: ErrorKind
    message: str
    code: str | int | None = None
    retryable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolError:
        return cls(
            kind=data.get("kind", "python"),
            message=str(data.get("message", "")),
            code=data.get("code"),
            retryable=bool(data.get("retryable", False)),
        )


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What one attempt of a tool produced."""

    status: Literal["ok", "error"]
    data: Any = None
    error: ToolError | None = None
    http_status: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def ok(cls, data: Any, *, http_status: int | None = None, **meta: Any) -> ToolOutcome:
        return cls(status="ok", data=data, http_status=http_status, meta=meta)

    @classmethod
    def fail(
        cls,
        kind: ErrorKind,
        message: str,
        *,
        code: str | int | None = None,
        retryable: bool = False,
        data: Any = None,
        http_status: int | None = None,
        **meta: Any,
    ) -> ToolOutcome:
        return cls(
            status="error",
            data=data,
            error=ToolError(kind=kind, message=message, code=code, retryable=retryable),
            http_status=http_status,
            meta=meta,
        )

    def to_output(self) -> dict[str, Any]:
        """The ``output`` object seen by policy rules (``response`` aliases ``data``)."""
        return {
            "status": self.status,
            "data": self.data,
            "response": self.data,
            "error": self.error.to_dict() if self.error else None,
            "http": {"status": self.http_status},
            "meta": self.meta,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "data": self.data,
            "error": self.error.to_dict() if self.error else None,
            "http_status": self.http_status,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolOutcome:
        error = data.get("error")
        return cls(
            status="error" if data.get("status") == "error" else "ok",
            data=data.get("data"),
            error=ToolError.from_dict(error) if error else None,
            http_status=data.get("http_status"),
            meta=dict(data.get("meta") or {}),
        )
