"""Principals: who makes a request, what kind they are and which roles they hold.

Roles: ``viewer`` (read), ``operator`` (register, execute, cancel), ``approver`` (decide
approvals and proposals), ``worker`` (report tool events, nothing else), ``admin``
(everything). Kinds: ``human`` or ``agent``. No agent may decide an approval, whatever its
roles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from noetl_agent.errors import Forbidden

Role = Literal["viewer", "operator", "approver", "worker", "admin"]
Kind = Literal["human", "agent"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "approver", "worker", "admin")
KINDS: tuple[Kind, ...] = ("human", "agent")
_IMPLIED: dict[str, set[str]] = {
    "viewer": {"viewer"},
    "operator": {"viewer", "operator"},
    "approver": {"viewer", "approver"},
    "worker": {"worker"},
    "admin": {"viewer", "operator", "approver", "worker", "admin"},
}


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    kind: Kind
    roles: frozenset[str]

    def has(self, role: Role) -> bool:
        return any(role in _IMPLIED.get(held, set()) for held in self.roles)

    def require(self, role: Role, action: str) -> None:
        """Raise ``Forbidden`` unless the principal holds ``role``."""
        if not self.has(role):
            raise Forbidden(
                f"{self.kind} principal '{self.name}' cannot {action}: it needs the {role} role"
            )

    def require_human_approver(self, action: str) -> None:
        """Only a human with the approver role may decide approvals and proposals."""
        if self.kind != "human":
            raise Forbidden(
                f"agent principal '{self.name}' cannot {action}: only a human approver can; "
                "ask a person to decide in the review queue"
            )
        self.require("approver", action)


LOCAL_ADMIN = Principal("local-admin", "human", frozenset({"admin"}))
LOCAL_AGENT = Principal("local-agent", "agent", frozenset({"operator"}))
