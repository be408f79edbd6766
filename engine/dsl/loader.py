"""Load playbooks from YAML text with line numbers and actionable errors.

``parse_playbook(text)`` returns a validated :class:`Playbook` or raises
:class:`PlaybookInvalid` listing every problem with its path (``workflow[2].next``),
its line in the source, what is wrong and, for a misspelt key or kind, the closest valid
one. Static checks (:mod:`engine.dsl.checks`) run after the models validate.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from engine.dsl.checks import static_issues
from engine.dsl.models import TOOL_KINDS, Playbook, WorkbookEntry
from engine.errors import Issue, PlaybookInvalid

try:  # the C loader is ~10x faster when libyaml is present
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the yaml build
    _Loader = yaml.SafeLoader

PathKey = tuple[str | int, ...]
_KIND_MODELS: dict[str, type[BaseModel]] = {}


def read_playbook_text(path: str | Path) -> str:
    """The text of a playbook file; ``PlaybookInvalid`` saying why it cannot be read."""
    file = Path(path)
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlaybookInvalid(
            [Issue("", f"file '{file}' does not exist", hint="check the path")], str(file)
        ) from None
    except IsADirectoryError:
        raise PlaybookInvalid(
            [Issue("", f"'{file}' is a directory", hint="give the playbook's YAML file")],
            str(file),
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlaybookInvalid([Issue("", f"cannot read '{file}': {exc}")], str(file)) from None


def load_playbook(path: str | Path) -> Playbook:
    """Read and validate the playbook file at ``path``."""
    return parse_playbook(read_playbook_text(path), source=str(path))


def parse_playbook(text: str, *, source: str | None = None, check: bool = True) -> Playbook:
    """Parse YAML text into a validated playbook; raise ``PlaybookInvalid`` with all issues."""
    data, lines = _load_yaml(text, source)
    if not isinstance(data, dict):
        raise PlaybookInvalid(
            [
                Issue(
                    "",
                    "a playbook must be a YAML mapping with apiVersion, kind, metadata, workflow",
                    line=1,
                    hint="start from `noetl-agent schema` or an example in the README",
                )
            ],
            source,
        )
    try:
        playbook = Playbook.model_validate(data)
    except PydanticValidationError as exc:
        found = [_issue_from_error(error, data, lines) for error in exc.errors()]
        raise PlaybookInvalid(_dedupe([i for i in found if i is not None]), source) from None
    if check:
        issues = static_issues(playbook)
        if issues:
            for index, issue in enumerate(issues):
                if issue.line is None:
                    issues[index] = Issue(
                        issue.path, issue.message, _line_for(issue.path, lines), issue.hint
                    )
            raise PlaybookInvalid(issues, source)
    return playbook


def _load_yaml(text: str, source: str | None) -> tuple[Any, dict[PathKey, int]]:
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise PlaybookInvalid(
            [Issue("", f"not valid YAML: {problem}", line, "check indentation and quoting")],
            source,
        ) from None
    if node is None:
        raise PlaybookInvalid([Issue("", "the document is empty", 1)], source)
    lines: dict[PathKey, int] = {}
    _index_lines(node, (), lines)
    data = yaml.load(text, Loader=_Loader)
    return data, lines


def _index_lines(node: yaml.Node, path: PathKey, lines: dict[PathKey, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*path, key)] = key_node.start_mark.line + 1
            _index_lines(value_node, (*path, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, (*path, index), lines)


def _line_for(path: str | PathKey, lines: dict[PathKey, int]) -> int | None:
    key = _parse_path(path) if isinstance(path, str) else path
    while True:
        if key in lines:
            return lines[key]
        if not key:
            return None
        key = key[:-1]


def _parse_path(path: str) -> PathKey:
    parts: list[str | int] = []
    for chunk in path.replace("]", "").split("."):
        if not chunk:
            continue
        name, *indexes = chunk.split("[")
        if name:
            parts.append(name)
        parts.extend(int(index) for index in indexes)
    return tuple(parts)


def format_path(key: PathKey) -> str:
    """``('workflow', 2, 'next')`` → ``workflow[2].next``."""
    text = ""
    for part in key:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _issue_from_error(error: Any, data: Any, lines: dict[PathKey, int]) -> Issue | None:
    loc, model, mismatch = _data_path(tuple(error["loc"]), data)
    if mismatch:
        return None  # an error from the union member that does not match the data's shape
    path = format_path(loc)
    kind = error["type"]
    line = _line_for(loc, lines)
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else ""
        valid = _model_keys(model) if model is not None else []
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
        hint = f"did you mean `{close[0]}`?" if close else f"valid keys: {', '.join(valid)}"
        where = format_path(loc[:-1]) or "the playbook"
        return Issue(path, f"did not expect `{key}` in {where}", line, hint)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        found = error.get("ctx", {}).get("tag")
        if kind == "union_tag_not_found" or found is None:
            return Issue(path, "a tool needs `kind`", line, f"one of: {', '.join(TOOL_KINDS)}")
        close = difflib.get_close_matches(str(found), TOOL_KINDS, n=1, cutoff=0.5)
        hint = f"did you mean `{close[0]}`?" if close else f"one of: {', '.join(TOOL_KINDS)}"
        return Issue(f"{path}.kind", f"unknown tool kind `{found}`", line, hint)
    if kind == "missing":
        field = str(loc[-1]) if loc else ""
        need = None
        if field == "tool":
            need = "every step needs a tool; a routing-only step uses `tool: {kind: noop}`"
        return Issue(path, f"`{field}` is required", line, need)
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "literal_error":
        message = f"{message} (got {error.get('input')!r})"
    if kind == "string_type" and isinstance(error.get("input"), bool):
        return Issue(
            path,
            f"expected text, got the boolean {str(error['input']).lower()}",
            line,
            "YAML reads yes/no/on/off/true/false as booleans; quote the value",
        )
    return Issue(path, message, line)


def _data_path(loc: PathKey, data: Any) -> tuple[PathKey, type[BaseModel] | None, bool]:
    """Map a pydantic error location to a path in the YAML data and the model at the end.

    Pydantic inserts union member names and discriminator tags into ``loc``; those
    segments are dropped by walking the data alongside the models.
    """
    model: type[BaseModel] | None = Playbook
    annotation: Any = Playbook
    node: Any = data
    out: list[str | int] = []
    items = list(loc)
    while items:
        part = items.pop(0)
        if isinstance(node, list) and isinstance(part, int):
            out.append(part)
            node = node[part] if part < len(node) else None
            annotation = _list_item(annotation)
            continue
        if isinstance(node, dict) and part in node:
            out.append(part)
            model = _model_of(annotation, node)
            field = _field_for(model, str(part)) if model else None
            annotation = field if field is not None else Any
            node = node[part]
            continue
        if isinstance(part, str) and (part in TOOL_KINDS or _is_type_label(part)):
            # A union tag or member label, not in the data. A label of the member whose
            # shape differs from the data (list vs mapping) marks an error to drop.
            if part.startswith("list[") and not isinstance(node, list):
                return (), None, True
            if part.startswith("tagged-union[") and isinstance(node, list):
                return (), None, True
            continue
        if isinstance(node, dict):
            model = _model_of(annotation, node)
        out.append(part)
        node = None
    if isinstance(node, dict):
        model = _model_of(annotation, node) or model
    return tuple(out), model, False


def _is_type_label(part: str) -> bool:
    return part[:1].isupper() or part.startswith(
        ("list[", "dict[", "tagged-union[", "function-", "str", "int", "float", "bool", "literal[")
    )


def _list_item(annotation: Any) -> Any:
    for candidate in _flatten(annotation):
        if get_origin(candidate) is list:
            args = get_args(candidate)
            return args[0] if args else Any
    return Any


def _flatten(annotation: Any) -> list[Any]:
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _flatten(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        result: list[Any] = []
        for arg in get_args(annotation):
            result.extend(_flatten(arg))
        return result
    return [annotation]


def _model_of(annotation: Any, node: dict[str, Any]) -> type[BaseModel] | None:
    candidates = [
        c for c in _flatten(annotation) if isinstance(c, type) and issubclass(c, BaseModel)
    ]
    if not candidates:
        return None
    if len(candidates) > 1 and "kind" in node:
        for candidate in candidates:
            field = candidate.model_fields.get("kind")
            if field is not None and node["kind"] in get_args(field.annotation):
                return candidate
    return candidates[0]


def _field_for(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field.annotation
    return None


def _model_keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _dedupe(issues: list[Issue]) -> list[Issue]:
    seen: set[tuple[str, str]] = set()
    result: list[Issue] = []
    for issue in issues:
        key = (issue.path, issue.message)
        if key not in seen:
            seen.add(key)
            result.append(issue)
    return result


__all__ = [
    "WorkbookEntry",
    "format_path",
    "load_playbook",
    "parse_playbook",
    "read_playbook_text",
]
