"""Python code for the record transformations a sentence names.

``transform_code(text)`` recognises filters, sorting, top-N, de-duplication, grouping
and aggregates (count, sum/total, average, minimum, maximum) over named fields and
writes a ``main`` that applies them in that order. Every transformation returns
``{"rows": [...], "count": n}`` plus one key per aggregate (``average_price``,
``total_amount``...), so later steps and conditions can name them. A sentence with no
recognised operation gets code that only normalises the input to records, and the
sentence is reported as not translated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from noetl_agent.generation.slots import comparisons

_FIELD = r"(?:the\s+)?(?:[a-z]+\s+)??([a-z_][a-z0-9_]*)"
_AGGREGATES = (
    ("average", re.compile(r"\b(?:average|mean|avg)\s+(?:of\s+)?" + _FIELD, re.I)),
    ("total", re.compile(r"\b(?:sum|total)\s+(?:up\s+)?(?:of\s+)?" + _FIELD, re.I)),
    ("max", re.compile(r"\b(?:maximum|max|highest|largest)\s+(?:of\s+)?" + _FIELD, re.I)),
    ("min", re.compile(r"\b(?:minimum|min|lowest|smallest)\s+(?:of\s+)?" + _FIELD, re.I)),
)
_NOT_FIELDS = frozenset(
    {
        "the",
        "of",
        "all",
        "them",
        "it",
        "results",
        "records",
        "rows",
        "items",
        "data",
        "values",
        "list",
        "response",
        "orders",
        "by",
        "per",
    }
)
_SORT = re.compile(
    r"\b(?:sort|order|rank)\w*\s+(?:them\s+|it\s+|the\s+\w+\s+)?by\s+([a-z_]\w*)", re.I
)
_DESC = re.compile(r"\b(?:desc\w*|highest|largest|biggest|most|top|decreasing)\b", re.I)
_TOP = re.compile(r"\b(?:top|first|best)\s+(\d+)\b", re.I)
_TOP_BY = re.compile(r"\b(?:top|first|best)\s+\d+\s+(?:\w+\s+)?by\s+([a-z_]\w*)", re.I)
_DEDUPE = re.compile(
    r"\b(?:dedup\w*|de-duplicate\w*|unique|distinct|remove duplicates)\b(?:\s+by\s+([a-z_]\w*))?",
    re.I,
)
_GROUP = re.compile(
    r"\b(?:group\w*|aggregat\w*|count\w*|break\s+down)\b[^.]*?\b(?:by|per)\s+([a-z_]\w*)", re.I
)
_COUNT = re.compile(r"\b(?:count|how many|number of)\b", re.I)
_FILTER = re.compile(r"\b(?:filter|keep|only|select|drop|remove|exclude|where|with)\b", re.I)
_DROP = re.compile(r"\b(?:drop|remove|exclude|discard)\b", re.I)
_PRELUDE = """def main(data=None, **input):
    rows = data
    if isinstance(rows, dict):
        for key in ("rows", "json", "items", "results", "data"):
            if isinstance(rows.get(key), list):
                rows = rows[key]
                break
            if isinstance(rows.get(key), dict):
                rows = rows[key]
    if rows is None:
        rows = []
    if not isinstance(rows, list):
        rows = [rows]
    flat = []
    for row in rows:  # the results of a loop of HTTP calls: their JSON bodies, flattened
        if isinstance(row, dict) and "status_code" in row and ("json" in row or "text" in row):
            row = row.get("json", row.get("text"))
        flat.extend(row if isinstance(row, list) else [row])
    rows = flat

    def number(row, name):
        value = row.get(name) if isinstance(row, dict) else None
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
"""


@dataclass(slots=True)
class Transform:
    """The code of a transformation, what it computes and whether anything was recognised."""

    code: str
    operations: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=lambda: ["rows", "count"])

    @property
    def recognised(self) -> bool:
        return bool(self.operations)

    @property
    def main_output(self) -> str:
        """The value a condition on "it" compares: the last aggregate, else the count."""
        return self.outputs[-1]


def transform_code(text: str) -> Transform:
    """Code applying the operations written in ``text`` (see the module docstring)."""
    body: list[str] = []
    operations: list[str] = []
    outputs = ["rows", "count"]
    for comparison in comparisons(text) if _FILTER.search(text) else []:
        if comparison.field in ("count", "value"):
            continue
        keep = "not " if _DROP.search(text) else ""
        body.append(
            f"    rows = [r for r in rows if {keep}((number(r, {comparison.field!r}) is not None)"
            f" and number(r, {comparison.field!r}) {comparison.literal})]"
        )
        operations.append(f"{'drop' if keep else 'keep'} {comparison.field} {comparison.literal}")
    dedupe = _DEDUPE.search(text)
    if dedupe:
        key = dedupe.group(1)
        body += [
            "    seen, unique = set(), []",
            "    for r in rows:",
            f"        key = r.get({key!r}) if isinstance(r, dict) else repr(r)"
            if key
            else "        key = repr(sorted(r.items())) if isinstance(r, dict) else repr(r)",
            "        if key not in seen:",
            "            seen.add(key)",
            "            unique.append(r)",
            "    rows = unique",
        ]
        operations.append(f"deduplicate{f' by {key}' if key else ''}")
    sort = _SORT.search(text) or _TOP_BY.search(text)
    if sort and sort.group(1).lower() not in _NOT_FIELDS:
        name = sort.group(1)
        reverse = bool(_DESC.search(text))
        body.append(
            f"    rows = sorted(rows, key=lambda r: (number(r, {name!r}) is None, "
            f"{'-' if reverse else ''}(number(r, {name!r}) or 0)))"
        )
        operations.append(f"sort by {name}{' descending' if reverse else ''}")
    top = _TOP.search(text)
    if top:
        body.append(f"    rows = rows[:{int(top.group(1))}]")
        operations.append(f"first {int(top.group(1))}")
    result = ['    result = {"rows": rows, "count": len(rows)}']
    group = _GROUP.search(text)
    if group and group.group(1).lower() not in _NOT_FIELDS:
        key = group.group(1)
        result += [
            "    groups = {}",
            "    for r in rows:",
            f"        name = str(r.get({key!r})) if isinstance(r, dict) else 'None'",
            "        groups[name] = groups.get(name, 0) + 1",
            f"    result['by_{key}'] = groups",
        ]
        operations.append(f"count by {key}")
        outputs.append(f"by_{key}")
    for name, pattern in _AGGREGATES:
        for match in pattern.finditer(text):
            column = match.group(1)
            if column.lower() in _NOT_FIELDS:
                continue
            out = f"{name}_{column}"
            values = f"[v for v in (number(r, {column!r}) for r in rows) if v is not None]"
            if name == "average":
                expr = "(sum(values) / len(values)) if values else None"
            elif name == "total":
                expr = "sum(values)"
            else:
                expr = f"{name}(values) if values else None"
            result += [f"    values = {values}", f"    result[{out!r}] = {expr}"]
            operations.append(f"{name} of {column}")
            outputs.append(out)
    if _COUNT.search(text) and not operations:
        operations.append("count")
    code = _PRELUDE + "\n".join(body + result + ["    return result", ""])
    return Transform(code, operations, outputs)
