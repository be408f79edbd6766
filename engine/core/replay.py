"""Replay an execution's stored events through the state machine and check every decision.

Inputs (the request, tool and retry reports, approval decisions, cancel requests) are
fed one at a time; the events the machine decides must equal the events stored right
after that input. A difference means the log was written by a different playbook or a
different engine: :class:`Nondeterminism` says where.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.core import events as ev
from engine.core.events import Event
from engine.core.machine import ExecutionMachine
from engine.dsl.models import Playbook
from engine.errors import NoetlError

INPUT_TYPES = frozenset(
    {
        ev.PLAYBOOK_EXECUTION_REQUESTED,
        ev.TOOL_STARTED,
        ev.TOOL_PROCESSED,
        ev.RETRY_STARTED,
        ev.RETRY_PROCESSED,
        ev.APPROVAL_DECIDED,
        ev.EXECUTION_CANCEL_REQUESTED,
    }
)


class Nondeterminism(NoetlError):
    """Replaying the log produced a decision different from the stored one."""


def _key(event: Event) -> tuple[object, ...]:
    return (
        event.event_id,
        event.event_type,
        event.entity_type,
        event.entity_id,
        event.step_run_id,
        event.iteration,
        event.status,
        event.payload,
    )


def replay(playbook: Playbook, stored: Sequence[Event]) -> ExecutionMachine:
    """Replay ``stored`` (one execution, in seq order); return the rebuilt machine."""
    if not stored:
        raise Nondeterminism("nothing to replay: the log is empty")
    machine = ExecutionMachine(playbook, stored[0].execution_id)
    index = 0
    while index < len(stored):
        event = stored[index]
        if event.event_type not in INPUT_TYPES:
            raise Nondeterminism(
                f"seq {event.seq}: stored {event.event_type} for {event.entity_id} "
                "but replay decided nothing here"
            )
        decided = machine.handle(event).events
        index += 1
        for offset, expected in enumerate(decided):
            position = index + offset
            if position >= len(stored):
                raise Nondeterminism(
                    f"replay decided {expected.event_type} for {expected.entity_id} "
                    "beyond the end of the stored log"
                )
            actual = stored[position]
            if _key(actual) != _key(expected):
                raise Nondeterminism(
                    f"seq {actual.seq}: stored {actual.event_type} for {actual.entity_id} "
                    f"{actual.payload}, replay decided {expected.event_type} for "
                    f"{expected.entity_id} {expected.payload}"
                )
        index += len(decided)
    return machine
