"""The shape of each step's result, as the playbook's own templates read it.

A dry run replaces side-effecting tools with synthesised outputs; to prove the routing
and templating of a draft, those outputs must have the keys its templates read. This
module parses every template of a playbook (Jinja2 syntax only, nothing is rendered) and
records, per step, the paths read from its result: ``fetch.json.items`` read as a loop's
list, ``item.price`` read on that list's elements through the loop iterator, ``count``
compared with a number, ``rows | length``. :func:`synthesise` builds a value with exactly
those keys: lists of two elements, numbers where a number is compared, ``True`` for
flags such as ``approved``, text elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment, nodes
from jinja2.exceptions import TemplateSyntaxError

from engine.dsl.models import Playbook

_ENV = Environment()
_LIST_FILTERS = frozenset(
    {
        "length",
        "count",
        "first",
        "last",
        "sort",
        "list",
        "selectattr",
        "rejectattr",
        "map",
        "join",
        "sum",
        "unique",
        "batch",
        "slice",
    }
)
_FLAGS = ("approved", "ok", "success", "passed", "valid", "enabled")


@dataclass(slots=True)
class Shape:
    """What is read from one value: keys read from it, whether it is iterated (a list,
    with the shape of its elements), whether it is compared with a number."""

    keys: dict[str, Shape] = field(default_factory=dict)
    listed: bool = False
    element: Shape | None = None
    number: bool = False

    def at(self, path: list[str | int]) -> Shape:
        node = self
        for part in path:
            if isinstance(part, int):
                node.listed = True
                node.element = node.element or Shape()
                node = node.element
            else:
                node = node.keys.setdefault(part, Shape())
        return node

    def item(self) -> Shape:
        self.listed = True
        self.element = self.element or Shape()
        return self.element


def result_shapes(playbook: Playbook) -> dict[str, Shape]:
    """Step name → the shape its result is read with (steps never read are absent)."""
    steps = {step.step for step in playbook.workflow}
    shapes: dict[str, Shape] = {}
    iterators: dict[str, tuple[str, list[str | int]]] = {}
    for step in playbook.workflow:
        if step.loop is not None and isinstance(step.loop.in_, str):
            path = _single_path(step.loop.in_)
            if path and path[0] in steps:
                root = shapes.setdefault(str(path[0]), Shape())
                root.at(path[1:]).item()
                iterators[step.loop.iterator] = (str(path[0]), path[1:])
    for text in _templates(playbook.model_dump(mode="json", by_alias=True)):
        try:
            tree = _ENV.parse(text)
        except TemplateSyntaxError:
            continue  # validation reports it; the dry run fails on it
        for path, usage in _reads(tree):
            name = str(path[0])
            if name in steps:
                node = shapes.setdefault(name, Shape()).at(path[1:])
            elif name in iterators:
                owner, prefix = iterators[name]
                node = shapes.setdefault(owner, Shape()).at(prefix).item().at(path[1:])
            else:
                continue
            if usage == "list":
                node.item()
            elif usage == "number":
                node.number = True
    return shapes


def synthesise(shape: Shape | None, name: str = "value") -> Any:
    """A value with every key ``shape`` reads (see the module docstring)."""
    if shape is None:
        return f"sample {name}"
    if shape.listed:
        element = synthesise(shape.element, name) if shape.element else f"sample {name}"
        return [element, element]
    if shape.keys:
        return {key: synthesise(child, key) for key, child in shape.keys.items()}
    if shape.number:
        return 1
    if name.lower() in _FLAGS:
        return True
    return f"sample {name}"


def _templates(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if "{{" in value or "{%" in value else []
    if isinstance(value, dict):
        return [text for item in value.values() for text in _templates(item)]
    if isinstance(value, list):
        return [text for item in value for text in _templates(item)]
    return []


def _single_path(text: str) -> list[str | int] | None:
    try:
        tree = _ENV.parse(text)
    except TemplateSyntaxError:
        return None
    outputs = [n for n in tree.body if isinstance(n, nodes.Output)]
    if len(outputs) != 1 or len(outputs[0].nodes) != 1:
        return None
    return _path(outputs[0].nodes[0])


def _path(node: nodes.Node) -> list[str | int] | None:
    """``a.b[0].c`` → ``['a', 'b', 0, 'c']``; None for anything else."""
    if isinstance(node, nodes.Name):
        return [node.name]
    if isinstance(node, nodes.Getattr):
        base = _path(node.node)
        return None if base is None else [*base, node.attr]
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        base = _path(node.node)
        key = node.arg.value
        if base is None or not isinstance(key, str | int):
            return None
        return [*base, key]
    return None


def _reads(tree: nodes.Node) -> list[tuple[list[str | int], str]]:
    """Every path the template reads, with how: ``list``, ``number`` or ``value``."""
    found: list[tuple[list[str | int], str]] = []
    marked: set[int] = set()
    for filtered in tree.find_all(nodes.Filter):
        path = _path(filtered.node) if filtered.node is not None else None
        if path and filtered.name in _LIST_FILTERS:
            found.append((path, "list"))
            marked.add(id(filtered.node))
    for loop in tree.find_all(nodes.For):
        path = _path(loop.iter)
        if path:
            found.append((path, "list"))
            marked.add(id(loop.iter))
    for compare in tree.find_all(nodes.Compare):
        sides = [compare.expr, *(operand.expr for operand in compare.ops)]
        numeric = any(
            isinstance(s, nodes.Const)
            and isinstance(s.value, int | float)
            and not isinstance(s.value, bool)
            for s in sides
        )
        for side in sides:
            path = _path(side)
            if path and numeric:
                found.append((path, "number"))
                marked.add(id(side))
    for kind in (nodes.Getattr, nodes.Getitem, nodes.Name):
        for read in tree.find_all(kind):
            if id(read) in marked:
                continue
            path = _path(read)
            if path:
                found.append((path, "value"))
    return found
