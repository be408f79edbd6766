"""The draft gate: generated playbooks that run code wait for a human before running live.

A generated draft is recorded as ``playbook.generated`` in a log of its own,
``draft:<fingerprint>``, where the fingerprint is a hash of everything the playbook does
(its workflow, workbook, workload, keychain and executor; not its name, path or
description, so renaming or re-indenting a draft does not escape the gate). When the
draft holds a code-executing tool (``python``, ``shell``, or an SQL ``command`` of
``postgres`` or ``duckdb``) it is gated: :class:`DraftGate`, installed on an engine with
:func:`install_draft_gate`, refuses to start an execution of any catalog version with
that fingerprint (sub-playbook calls included) with :class:`DraftNotPromoted`, until a
human operator promotes it (:func:`promote`), which records ``approval.decided`` with who
decided in the same log. Dry runs never pass the gate: they run nothing for real.

``NOETL_GENERATED_GATE=off`` switches the gate off (default ``on``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from engine.core import events as ev
from engine.core.events import Event
from engine.dsl.models import DuckdbTool, Playbook, PostgresTool, PythonTool, ShellTool
from engine.errors import NotFound
from engine.ports import CatalogEntry, EventStore
from engine.runtime.embedded import Engine
from engine.runtime.tool_runner import now
from noetl_agent.errors import Forbidden
from noetl_agent.generation.errors import DraftNotPromoted
from noetl_agent.principals import Principal

GATE_ENV = "NOETL_GENERATED_GATE"
_OFF = frozenset({"off", "0", "false", "no"})


def gate_enabled() -> bool:
    """Whether gated drafts are refused (``NOETL_GENERATED_GATE`` is not off)."""
    return os.environ.get(GATE_ENV, "on").strip().lower() not in _OFF


def code_tools(playbook: Playbook) -> list[str]:
    """The code-executing tools of ``playbook``, in order of first use (``python``,
    ``shell``, ``postgres command``, ``duckdb command``)."""
    found: dict[str, None] = {}
    tools = [tool for step in playbook.workflow for tool in step.tools]
    tools += [entry.tool for entry in playbook.workbook]
    for tool in tools:
        if isinstance(tool, PythonTool | ShellTool):
            found.setdefault(tool.kind, None)
        elif isinstance(tool, PostgresTool | DuckdbTool) and tool.command is not None:
            found.setdefault(f"{tool.kind} command", None)
    return list(found)


def fingerprint(playbook: Playbook) -> str:
    """A hash of what the playbook does (see the module docstring)."""
    body = playbook.model_dump(mode="json", by_alias=True, exclude={"metadata"})
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def draft_log(fingerprint_: str) -> str:
    """The id of the log a draft's generation and promotion are recorded in."""
    return f"draft:{fingerprint_}"


@dataclass(frozen=True, slots=True)
class DraftStatus:
    """What the log says of a playbook: generated or not, gated, promoted by whom."""

    fingerprint: str
    generated: bool
    gated: bool
    code_tools: list[str]
    promoted_by: str | None = None
    promoted_at: str | None = None

    @property
    def blocked(self) -> bool:
        """Whether a live run is refused (while the gate is on)."""
        return self.generated and self.gated and self.promoted_by is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "generated": self.generated,
            "gated": self.gated,
            "code_tools": self.code_tools,
            "promoted_by": self.promoted_by,
            "promoted_at": self.promoted_at,
            "blocked": self.blocked,
        }


async def draft_status(events: EventStore, playbook: Playbook) -> DraftStatus:
    """Whether ``playbook`` is a generated draft, and whether it was promoted."""
    fp = fingerprint(playbook)
    kinds = code_tools(playbook)
    generated = gated = False
    promoted_by = promoted_at = None
    for event in await events.read(draft_log(fp)):
        if event.event_type == ev.PLAYBOOK_GENERATED:
            generated = True
            gated = gated or bool(event.payload.get("gated"))
        elif event.event_type == ev.APPROVAL_DECIDED and event.payload.get("approved"):
            promoted_by = str(event.payload.get("decided_by"))
            promoted_at = event.timestamp
    return DraftStatus(fp, generated, gated, kinds, promoted_by, promoted_at)


def generated_event(playbook: Playbook, payload: dict[str, Any], generation_id: str) -> Event:
    """The ``playbook.generated`` event of a draft (``payload`` gains the gate's fields)."""
    fp = fingerprint(playbook)
    kinds = code_tools(playbook)
    return Event(
        event_id=f"{draft_log(fp)}:generated:{generation_id}",
        event_type=ev.PLAYBOOK_GENERATED,
        execution_id=draft_log(fp),
        timestamp=now(),
        entity_type="playbook",
        entity_id=playbook.path,
        status=ev.STATUS_SUCCESS,
        payload={
            **payload,
            "path": playbook.path,
            "fingerprint": fp,
            "code_tools": kinds,
            "gated": bool(kinds),
            "generation_id": generation_id,
        },
    )


async def promote(
    events: EventStore, playbook: Playbook, principal: Principal, comment: str | None = None
) -> DraftStatus:
    """Let a generated draft run live: record a human operator's decision and return the
    draft's status (promoting twice keeps the first decision). ``Forbidden`` for an agent
    or a principal without the operator role; ``NotFound`` when the playbook is not a
    recorded draft."""
    if principal.kind != "human":
        raise Forbidden(
            f"agent principal '{principal.name}' cannot promote generated playbooks: only a "
            "human operator can; ask a person to review the draft"
        )
    principal.require("operator", "promote generated playbooks")
    status = await draft_status(events, playbook)
    if not status.generated:
        raise NotFound(
            f"playbook '{playbook.path}' is not a generated draft (no `playbook.generated` "
            "record of what it does): it needs no promotion"
        )
    if status.promoted_by is not None:
        return status
    fp = status.fingerprint
    await events.append(
        [
            Event(
                event_id=f"{draft_log(fp)}:promoted",
                event_type=ev.APPROVAL_DECIDED,
                execution_id=draft_log(fp),
                timestamp=now(),
                entity_type="playbook",
                entity_id=playbook.path,
                status=ev.STATUS_SUCCESS,
                payload={
                    "approval_id": draft_log(fp),
                    "subject": "generated playbook",
                    "approved": True,
                    "decided_by": principal.name,
                    "comment": comment,
                    "code_tools": status.code_tools,
                },
            )
        ]
    )
    return await draft_status(events, playbook)


class DraftGate:
    """Refuses executions of gated, unpromoted drafts (an engine admission check)."""

    def __init__(self, events: EventStore) -> None:
        self.events = events
        self._cleared: set[tuple[str, int]] = set()  # versions known to run freely

    async def __call__(self, entry: CatalogEntry, playbook: Playbook) -> None:
        if not gate_enabled():
            return
        key = (entry.path, entry.version)
        if key in self._cleared:
            return
        if not code_tools(playbook):
            self._cleared.add(key)
            return
        status = await draft_status(self.events, playbook)
        if status.promoted_by is not None:
            self._cleared.add(key)  # a promotion is never taken back
            return
        if status.blocked:
            raise DraftNotPromoted(
                f"playbook '{entry.path}' version {entry.version} is a generated draft that "
                f"runs code ({', '.join(status.code_tools)}) and no human operator has "
                "promoted it; review it, then promote it with "
                f"`noetl-agent promote catalog://{entry.path}@{entry.version}`"
            )


def install_draft_gate(engine: Engine) -> DraftGate:
    """Make ``engine`` refuse gated drafts (see the module docstring)."""
    gate = DraftGate(engine.events)
    engine.admit_with(gate)
    return gate
