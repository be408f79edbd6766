"""Playbook validation: every problem named with its path, line and a fix."""

from __future__ import annotations

import json
import textwrap

import pytest

from engine.dsl.loader import parse_playbook
from engine.dsl.models import Playbook, parse_duration
from engine.errors import PlaybookInvalid

HEAD = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: t}
workflow:
"""


def _problems(body: str) -> str:
    with pytest.raises(PlaybookInvalid) as caught:
        parse_playbook(HEAD + textwrap.dedent(body))
    return str(caught.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            """\
            - step: start
              tool: {kind: noop}
              nxet: {arcs: [{step: start}]}
            """,
            ["did not expect `nxet`", "did you mean `next`?", "line 7"],
        ),
        (
            """\
            - step: start
              tool: {kind: pyhton, code: "x = 1"}
            """,
            ["unknown tool kind `pyhton`", "did you mean `python`?", "line 6"],
        ),
        (
            """\
            - step: start
              tool: {kind: shell, cmd: [ls]}
            """,
            ["did not expect `cmd`", "did you mean `cmds`?"],
        ),
        (
            """\
            - step: start
              desc: no tool here
            """,
            ["`tool` is required", "kind: noop"],
        ),
        (
            """\
            - step: start
              tool: {kind: noop}
              next: {arcs: [{step: fetc}]}
            - step: fetch
              tool: {kind: noop}
            """,
            ["arc to unknown step `fetc`", "did you mean `fetch`?"],
        ),
        (
            """\
            - step: start
              tool: {kind: noop}
            - step: start
              tool: {kind: noop}
            """,
            ["step name `start` is used 2 times"],
        ),
        (
            """\
            - step: start
              tool: {kind: noop}
            - step: orphan
              tool: {kind: noop}
            """,
            ["step `orphan` is unreachable"],
        ),
        (
            """\
            - step: start
              tool: {kind: noop}
              next: [spin]
            - step: spin
              tool: {kind: noop}
              next: [start]
            """,
            ["cycle with no exit"],
        ),
        (
            """\
            - step: start
              tool: {kind: workbook, name: missing}
            """,
            ["workbook tool `missing` is not defined"],
        ),
        (
            """\
            - step: start
              tool:
                kind: python
                code: "x = 1"
                spec:
                  policy:
                    rules:
                      - {when: "{{ true }}", then: {do: jump}}
            """,
            ["`do: jump` needs `to: <step name>`"],
        ),
        (
            """\
            - step: start
              tool: {kind: python}
            """,
            ["exactly one of `code` or `script`"],
        ),
        (
            """\
            - step: start
              loop: {in: [1, 2], iterator: i}
              tool: {kind: approval, prompt: "ok?"}
            """,
            ["cannot run in a loop or a pipeline", "a step of its own"],
        ),
        (
            """\
            - step: yes
              tool: {kind: noop}
            """,
            ["expected text, got the boolean true", "quote the value"],
        ),
    ],
)
def test_invalid_playbooks_explain_what_to_fix(body: str, expected: list[str]) -> None:
    message = _problems(body)
    for fragment in expected:
        assert fragment in message


def test_not_yaml_and_not_a_mapping_are_clear_errors() -> None:
    with pytest.raises(PlaybookInvalid, match="not valid YAML"):
        parse_playbook("workflow: [\n")
    with pytest.raises(PlaybookInvalid, match="must be a YAML mapping"):
        parse_playbook("- just a list\n")
    with pytest.raises(PlaybookInvalid, match="empty"):
        parse_playbook("")


def test_issues_carry_path_line_and_hint() -> None:
    with pytest.raises(PlaybookInvalid) as caught:
        parse_playbook(HEAD + "- step: start\n  tool: {kind: noop}\n  nxet: 1\n")
    (issue,) = caught.value.issues
    assert issue.to_dict() == {
        "path": "workflow[0].nxet",
        "line": 7,
        "message": "did not expect `nxet` in workflow[0]",
        "hint": "did you mean `next`?",
    }


def test_short_forms_and_defaults() -> None:
    playbook = parse_playbook(
        HEAD
        + textwrap.dedent(
            """\
            - step: first
              tool: {kind: noop}
              next: second
            - step: second
              tool: {kind: noop}
            - step: end
              tool: {kind: noop}
            """
        )
    )
    assert playbook.entry_step == "first"
    assert playbook.path == "t"
    assert [a.step for a in playbook.arcs_of(playbook.step("first"))] == ["second"]
    # A step without `next` routes to a step named `end` when there is one.
    assert [a.step for a in playbook.arcs_of(playbook.step("second"))] == ["end"]


def test_json_schema_describes_the_language() -> None:
    schema = Playbook.model_json_schema(by_alias=True)
    json.dumps(schema)
    assert {"apiVersion", "kind", "metadata", "workflow"} <= set(schema["required"])
    assert "workflow" in schema["properties"]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(30, 30.0), ("30s", 30.0), ("250ms", 0.25), ("2m", 120.0), ("1h", 3600.0)],
)
def test_durations(value: float | str, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "-1s", 0, True])
def test_bad_durations_are_rejected(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)  # type: ignore[arg-type]
