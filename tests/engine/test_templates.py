"""Sandboxed rendering: native values for single expressions, strict undefined names."""

from __future__ import annotations

import pytest

from engine.core.templates import StepResult, StepResultList, render_string, render_value
from engine.errors import TemplateError

CONTEXT = {
    "items": [1, 2],
    "fetch": StepResult({"rain": True, "items": ["a"]}),
    "looped": StepResultList([{"v": 1}]),
    "ctx": {"n": 3},
    "skipped": None,
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ items }}", [1, 2]),
        ("{{ ctx.n + 1 }}", 4),
        ("n={{ ctx.n }}", "n=3"),
        ("{{ fetch.data.rain }}", True),
        ("{{ fetch.items }}", ["a"]),
        ("{{ looped.results | length }}", 1),
        ("{{ ctx.missing | default('x') }}", "x"),
        ("{{ skipped.v if skipped else 'other' }}", "other"),
        ("plain text", "plain text"),
    ],
)
def test_rendering(source: str, expected: object) -> None:
    assert render_string(source, CONTEXT) == expected


def test_undefined_names_name_the_place_and_expression() -> None:
    with pytest.raises(TemplateError) as caught:
        render_string("{{ nope }}", CONTEXT, where="step `a`, field url")
    message = str(caught.value)
    assert "step `a`, field url" in message and "'nope' is undefined" in message
    assert "{{ nope }}" in message


def test_the_sandbox_refuses_unsafe_access() -> None:
    with pytest.raises(TemplateError, match=r"not allowed|undefined|failed"):
        render_string("{{ items.__class__.__mro__ }}", CONTEXT)


def test_nested_values_render_with_paths_in_errors() -> None:
    assert render_value({"a": ["{{ ctx.n }}"]}, CONTEXT) == {"a": [3]}
    with pytest.raises(TemplateError, match=r"input.a\[0\]"):
        render_value({"a": ["{{ bad }}"]}, CONTEXT, where="input")
