"""Sandboxed Jinja2 rendering of playbook strings.

Templates are applied to playbook strings only, never to data. A string that is exactly
one ``{{ expr }}`` renders to the expression's native value (list, dict, number, bool);
anything else renders to text. An undefined name is an error naming the step, the field
and the expression. Compiled templates are cached by source text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from engine.errors import TemplateError

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)


class StepResult(dict[str, Any]):
    """A finished step's result as templates see it: ``.data`` falls back to the result."""


class StepResultList(list[Any]):
    """A loop step's result list; ``.data`` and ``.results`` read the list itself."""


class _Environment(SandboxedEnvironment):
    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, StepResult) and attribute == "data" and "data" not in obj:
            return obj
        if isinstance(obj, StepResultList) and attribute in ("data", "results"):
            return obj
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]  # keys win over dict methods: `{{ start.items }}`
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, StepResult) and argument == "data" and "data" not in obj:
            return obj
        return super().getitem(obj, argument)


def _to_json(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, default=str, indent=indent)


_ENV = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_ENV.filters["tojson"] = _to_json
_ENV.filters["to_json"] = _to_json
_ENV.filters["from_json"] = json.loads


def has_template(value: str) -> bool:
    return "{{" in value or "{%" in value


@lru_cache(maxsize=4096)
def _compile(source: str) -> tuple[bool, Callable[[Mapping[str, Any]], Any]]:
    match = _SINGLE.match(source)
    if match and "{{" not in match.group("expr") and "}}" not in match.group("expr"):
        expression = _ENV.compile_expression(match.group("expr"), undefined_to_none=False)
        return True, expression
    template = _ENV.from_string(source)
    return False, template.render


def render_string(source: str, context: Mapping[str, Any], *, where: str = "") -> Any:
    """Render one string; native value for a single expression, text otherwise."""
    if not has_template(source):
        return source
    try:
        native, render = _compile(source)
        value = render(context)
        if native and getattr(value, "__class__", None) is StrictUndefined:
            value._fail_with_undefined_error()
        return value
    except UndefinedError as exc:
        raise TemplateError(
            f"{where or 'template'}: {exc.message} in `{source.strip()}`; "
            "check the name (workload keys, ctx.*, finished step names) or add `| default(...)`"
        ) from None
    except TemplateSyntaxError as exc:
        raise TemplateError(
            f"{where or 'template'}: template syntax error in `{source.strip()}`: {exc.message}"
        ) from None
    except SecurityError as exc:
        raise TemplateError(
            f"{where or 'template'}: `{source.strip()}` is not allowed in the sandbox: {exc}"
        ) from None
    except TemplateError:
        raise
    except Exception as exc:  # an error raised while evaluating the user's expression
        raise TemplateError(
            f"{where or 'template'}: `{source.strip()}` failed: {type(exc).__name__}: {exc}"
        ) from None


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
