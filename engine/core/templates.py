"""Sandboxed Jinja2 rendering of playbook strings.

Templates are applied to playbook strings only, never to data. A string that is exactly
one ``{{ expr }}`` renders to the expression's native value (list, dict, number, bool);
anything else renders to text. An undefined name is an error naming the step, the field
and the expression. Compiled templates are cached by source text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class StepResult(dict[str, Any]):
    """A finished step's result as templates see it: ``.data`` falls back to the result."""


class StepResultList(list[Any]):
    """A loop step's result list; ``.data`` and ``.results`` read the list itself."""


def has_template(value: str) -> bool:
    return "{{" in value or "{%" in value


def render_string(source: str, context: Mapping[str, Any], *, where: str = "") -> Any:
    """Render one string; native value for a single expression, text otherwise."""
    if not has_template(source):
        return source
    from engine.core.sandbox import render  # Jinja2 loads with the first template

    return render(source, context, where)


def render_value(value: Any, context: Mapping[str, Any], *, where: str = "") -> Any:
    """Render every string inside ``value`` (dicts and lists recursively)."""
    if isinstance(value, str):
        return render_string(value, context, where=where)
    if isinstance(value, dict):
        return {
            key: render_value(item, context, where=f"{where}.{key}" if where else str(key))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            render_value(item, context, where=f"{where}[{index}]")
            for index, item in enumerate(value)
        ]
    return value


def truthy(value: Any) -> bool:
    """Truth of a rendered condition: native bools, and text such as 'false' or '0'."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "none", "null")
    return bool(value)


def plain(value: Any) -> Any:
    """Strip template wrapper types so a value can be stored as JSON."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value
