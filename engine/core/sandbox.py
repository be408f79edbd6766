"""The Jinja2 sandbox behind :mod:`engine.core.templates`, imported on the first template.

Playbooks without templates never pay for importing Jinja2.
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

from engine.core.templates import StepResult, StepResultList
from engine.errors import TemplateError

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)


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


@lru_cache(maxsize=4096)
def _compile(source: str) -> tuple[bool, Callable[[Mapping[str, Any]], Any]]:
    match = _SINGLE.match(source)
    if match and "{{" not in match.group("expr") and "}}" not in match.group("expr"):
        expression = _ENV.compile_expression(match.group("expr"), undefined_to_none=False)
        return True, expression
    template = _ENV.from_string(source)
    return False, template.render


def render(source: str, context: Mapping[str, Any], where: str) -> Any:
    """Render one template string (see ``templates.render_string``)."""
    try:
        native, evaluate = _compile(source)
        value = evaluate(context)
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
