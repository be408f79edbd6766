"""Replay an execution's stored events through the state machine and check every decision.

Inputs (the request, tool and retry reports, approval decisions, cancel requests) are
fed as they were taken: the inputs stored one after another (a batch of reports) are
applied together; the events the machine then decides must equal the events stored right
after them. A difference means the log was written by a different playbook or a
different engine: :class:`Nondeterminism` says where.

Logs written before the engine emitted ``loop.iteration.finished`` replay too: until the
batch holding the first stored ``loop.iteration.finished`` the machine decides without it
(the same decisions, as no iteration had ended before). When that first one follows the
decisions of a batch instead, a newer engine resumed an older log there and closed the
iterations reported before the restart at once; replay decides there as resuming did.
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
        event.attempt,
        event.status,
        event.payload,
    )


def replay(playbook: Playbook, stored: Sequence[Event]) -> ExecutionMachine:
    """Replay ``stored`` (one execution, in seq order); return the rebuilt machine."""
    if not stored:
        raise Nondeterminism("nothing to replay: the log is empty")
    first = next(
        (i for i, e in enumerate(stored) if e.event_type == ev.LOOP_ITERATION_FINISHED), None
    )
    if first is None:
        return _replay(playbook, stored, closing_from=None, resumed_at=None)
    try:
        return _replay(playbook, stored, closing_from=_batch_of(stored, first), resumed_at=None)
    except Nondeterminism as error:
        try:  # an older log, resumed by an engine that closes iterations
            return _replay(playbook, stored, closing_from=None, resumed_at=first)
        except Nondeterminism:
            raise error from None


def _replay(
    playbook: Playbook,
    stored: Sequence[Event],
    *,
    closing_from: int | None,
    resumed_at: int | None,
) -> ExecutionMachine:
    """Replay, closing iterations from the batch of inputs at ``closing_from``, or from
    the decisions that follow no input at ``resumed_at``."""
    machine = ExecutionMachine(playbook, stored[0].execution_id, close_iterations=False)
    index = 0
    while index < len(stored):
        event = stored[index]
        if event.event_type in INPUT_TYPES:
            end = _decisions_of(stored, index)
            if index == closing_from:
                machine.close_iterations = True
            for taken in stored[index:end]:
                machine.apply(taken)
            decided = machine.decide().events
            index = end
        elif index == resumed_at:
            machine.close_iterations = True
            decided = machine.decide().events
        else:
            decided = []
        if not decided and event.event_type not in INPUT_TYPES:
            raise Nondeterminism(
                f"seq {event.seq}: stored {event.event_type} for {event.entity_id} "
                "but replay decided nothing here"
            )
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
    machine.close_iterations = True
    return machine


def _decisions_of(stored: Sequence[Event], index: int) -> int:
    """The end of the batch of inputs starting at ``index``: where its decisions begin."""
    while index < len(stored) and stored[index].event_type in INPUT_TYPES:
        index += 1
    return index


def _batch_of(stored: Sequence[Event], decision: int) -> int:
    """The start of the batch of inputs whose decisions hold the one at ``decision``."""
    index = decision
    while index > 0 and stored[index - 1].event_type not in INPUT_TYPES:
        index -= 1
    while index > 0 and stored[index - 1].event_type in INPUT_TYPES:
        index -= 1
    return index
