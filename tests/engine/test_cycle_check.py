"""The static check for cycles with no exit names the steps of each cycle."""

from __future__ import annotations

import textwrap

import pytest

from engine.dsl.loader import parse_playbook
from engine.errors import PlaybookInvalid

HEAD = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: t}
workflow:
"""


def _messages(body: str) -> dict[str, str]:
    with pytest.raises(PlaybookInvalid) as caught:
        parse_playbook(HEAD + textwrap.dedent(body))
    return {issue.path: issue.message for issue in caught.value.issues}


def test_two_cycles_and_the_steps_leading_into_them() -> None:
    messages = _messages(
        """\
        - step: start
          tool: {kind: noop}
          next: {arcs: [{step: a}, {step: spin}, {step: done}]}
        - step: a
          tool: {kind: noop}
          next: {arcs: [{step: b}]}
        - step: b
          tool: {kind: noop}
          next: {arcs: [{step: c}]}
        - step: c
          tool: {kind: noop}
          next: {arcs: [{step: b}]}
        - step: spin
          tool: {kind: noop}
          next: {arcs: [{step: spin}]}
        - step: done
          tool: {kind: noop}
        """
    )
    assert messages == {
        "workflow[1]": "step `a` leads only into a cycle with no exit (steps `b`, `c`): "
        "no path from it ends",
        "workflow[2]": "step `b` is in a cycle with no exit (steps `b`, `c`): no path from it ends",
        "workflow[3]": "step `c` is in a cycle with no exit (steps `b`, `c`): no path from it ends",
        "workflow[4]": "step `spin` is in a cycle with no exit (steps `spin`): "
        "no path from it ends",
    }


def test_a_cycle_with_an_exit_is_fine() -> None:
    playbook = parse_playbook(
        HEAD
        + textwrap.dedent(
            """\
            - step: start
              tool: {kind: noop}
              next: {arcs: [{step: again}]}
            - step: again
              tool: {kind: noop}
              next: {arcs: [{step: again, when: "{{ false }}"}, {step: done}]}
            - step: done
              tool: {kind: noop}
            """
        )
    )
    assert [step.step for step in playbook.workflow] == ["start", "again", "done"]
