"""Wiring a planned chain of steps into arcs, and writing the playbook as YAML.

The planner produces a chain of :class:`Node` s: the step an incoming arc targets, the
steps whose arcs lead on (a fan-out's join), the condition under which the node runs,
whether it is the ``otherwise`` branch of the node before, whether it is an approval.
:func:`link` turns the chain into ``next`` arcs: a condition becomes an exclusive pair
(the node when it holds, else the node after, or the end); an ``otherwise`` node is the
other branch, and both branches join at the node after; an approval goes on when
approved and ends (or takes its ``otherwise``) when rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(slots=True)
class Node:
    """One link of the chain: the step an incoming arc targets, the steps whose arcs go
    on, and the condition under which it runs."""

    entry: str
    exits: list[str]
    condition: str | None = None
    otherwise: bool = False
    approval: bool = False


def link(
    start: dict[str, Any], steps: dict[str, dict[str, Any]], nodes: list[Node]
) -> list[dict[str, Any]]:
    """Wire ``start`` and ``nodes`` (whose steps are in ``steps``) by arcs, in order; return
    the ending steps this adds (after an approval)."""
    extra: dict[str, dict[str, Any]] = {}
    if not nodes:
        return []
    _arcs(start, [{"step": nodes[0].entry}])
    if nodes[0].condition:
        arcs = [{"step": nodes[0].entry, "when": nodes[0].condition}]
        _arcs(start, arcs + ([{"step": nodes[1].entry}] if len(nodes) > 1 else []))
    index = 0
    while index < len(nodes):
        node = nodes[index]
        after = nodes[index + 1] if index + 1 < len(nodes) else None
        later = nodes[index + 2] if index + 2 < len(nodes) else None
        for exit_name in node.exits:
            step = steps[exit_name]
            if node.approval:
                approval = node.entry
                rejected = (
                    later.entry
                    if after is not None and later is not None and later.otherwise
                    else _ending(extra, "rejected", approval)
                )
                if after is None:
                    arcs = [
                        {
                            "step": _ending(extra, "approved", approval),
                            "when": "{{ " + approval + ".approved }}",
                        },
                        {"step": rejected},
                    ]
                elif after.otherwise:
                    arcs = [{"step": after.entry, "when": "{{ not " + approval + ".approved }}"}]
                    arcs.append(
                        {"step": later.entry if later else _ending(extra, "approved", approval)}
                    )
                else:
                    arcs = [
                        {"step": after.entry, "when": "{{ " + approval + ".approved }}"},
                        {"step": rejected},
                    ]
                _arcs(step, arcs)
            elif after is None:
                continue
            elif after.condition:
                # when the condition does not hold: the next part, or the end here
                fallback = [{"step": later.entry}] if later is not None else []
                _arcs(step, [{"step": after.entry, "when": after.condition}, *fallback])
            elif after.otherwise and index > 0 and nodes[index].condition:
                # the branch taken when the condition holds skips its `otherwise`
                if later is not None:
                    _arcs(step, [{"step": later.entry}])
            else:
                _arcs(step, [{"step": after.entry}])
        index += 1
    return list(extra.values())


def _ending(extra: dict[str, dict[str, Any]], name: str, approval: str) -> str:
    if name not in extra:
        values: dict[str, Any] = {
            "approved": name == "approved",
            "comment": "{{ " + str(approval) + ".comment }}",
        }
        extra[name] = {
            "step": name,
            "desc": {
                "rejected": "End here: the reviewer rejected",
                "approved": "End here: the reviewer approved",
            }[name],
            "tool": {"kind": "noop", "input": values},
        }
    return name


def _arcs(step: dict[str, Any], arcs: list[dict[str, Any]]) -> None:
    existing = step.get("next")
    if existing and existing.get("spec", {}).get("mode") == "inclusive":
        return  # a fan-out keeps its own arcs
    step["next"] = {"arcs": arcs}


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (code) as literal blocks."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def dump_yaml(document: dict[str, Any]) -> str:
    """YAML of a playbook mapping, keys in their order, code as literal blocks."""
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
