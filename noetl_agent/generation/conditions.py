"""Conditions in words as Jinja expressions over an earlier step's result.

The planner keeps a :class:`DataRef` to the step whose result later steps read; it knows
how to reach into each kind of result (``fetch.json.price``, ``query[0].total``,
``average.average_price``, ``rows | length``). :func:`condition_expression` turns
``the count is above 100`` or ``it fails`` into the expression of an arc's ``when``, or
None when the words do not say something it can read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from noetl_agent.generation.slots import Comparison, comparisons
from noetl_agent.generation.transforms import Transform

_ERROR_CONDITION = re.compile(
    r"\b(?:fails?|failed|failing|errors?|goes wrong|is down|unavailable|breaks?)\b", re.I
)
_EMPTY_CONDITION = re.compile(
    r"\b(?:empty|no\s+(?:rows|records|results|items|data|orders))\b", re.I
)
_ANY_CONDITION = re.compile(r"\b(?:any|some|non-empty|not empty|there are)\b", re.I)
PRONOUNS = frozenset({"it", "they", "this", "that", "value", "result", "results", "total"})


@dataclass(slots=True)
class DataRef:
    """A step whose result the next steps read, and how to reach into it."""

    step: str
    kind: str  # http | python | sql | loop | join | playbook | approval
    transform: Transform | None = None

    def collection(self) -> str:
        """An expression of the step's records."""
        if self.kind == "http":
            return f"{self.step}.json"
        if self.kind == "python":
            return f"{self.step}.rows"
        return self.step

    def value(self, name: str) -> str | None:
        """An expression of the named value (``count``, ``it``, a field), or None."""
        if name == "count":
            if self.kind == "python":
                return f"{self.step}.count"
            return f"{self.collection()} | length"
        if self.kind == "python" and self.transform is not None:
            outputs = self.transform.outputs
            if name in PRONOUNS:
                return f"{self.step}.{self.transform.main_output}"
            if name in outputs:
                return f"{self.step}.{name}"
            close = [out for out in outputs if out.endswith(name) or name.endswith(out)]
            return f"{self.step}.{close[0]}" if close else None
        if name in PRONOUNS:
            return f"{self.step}.json" if self.kind == "http" else None
        if self.kind == "http":
            return f"{self.step}.json.{name}"
        if self.kind == "sql":
            return f"{self.step}[0].{name}"
        return None


def condition_expression(text: str, data: DataRef | None) -> str | None:
    """A Jinja expression of a condition written in words about ``data``'s result
    (``the count is above 100``, ``it fails``, ``there are no rows``), or None."""
    if _ERROR_CONDITION.search(text):
        return "{{ event.status == 'error' }}"
    if data is None:
        return None
    if _EMPTY_CONDITION.search(text):
        return "{{ (" + data.collection() + ") | length == 0 }}"
    found: list[Comparison] = comparisons(text)
    if found:
        comparison = found[0]
        value = data.value(comparison.field)
        if value is None:
            return None
        return "{{ (" + value + ") " + comparison.literal + " }}"
    if _ANY_CONDITION.search(text):
        return "{{ (" + data.collection() + ") | length > 0 }}"
    return None
