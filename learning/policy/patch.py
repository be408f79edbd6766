"""Patches of playbook documents: JSON-patch operations on the parsed YAML.

A proposal's patch is a list of ``{"op", "path", "value"}`` operations (``add``,
``replace``, ``remove``; paths are JSON pointers such as
``/workflow/2/tool/spec/policy``). ``apply_patch`` returns a new document and never
changes its input; ``carries`` tells whether a later version still holds what a patch
wrote; ``render`` writes the document back as YAML; ``unified_diff`` shows the
change between two versions in the normalised form, so only what changed is marked.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from learning.errors import PatchError

OPS = ("add", "replace", "remove")


def pointer(*parts: str | int) -> str:
    """The JSON pointer of ``parts`` (``pointer("workflow", 2, "spec")`` → ``/workflow/2/spec``)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def _parts(path: str) -> list[str]:
    if not path.startswith("/"):
        raise PatchError(f"patch path '{path}' must start with '/' (a JSON pointer)")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _child(container: Any, key: str, path: str) -> Any:
    if isinstance(container, dict):
        if key not in container:
            raise PatchError(f"patch path '{path}': no key '{key}' in the playbook")
        return container[key]
    if isinstance(container, list):
        index = _index(container, key, path, allow_end=False)
        return container[index]
    raise PatchError(f"patch path '{path}': '{key}' is inside a value that is not a map or list")


def _index(container: list[Any], key: str, path: str, *, allow_end: bool) -> int:
    if key == "-" and allow_end:
        return len(container)
    try:
        index = int(key)
    except ValueError:
        raise PatchError(f"patch path '{path}': '{key}' is not a list index") from None
    limit = len(container) if allow_end else len(container) - 1
    if not 0 <= index <= limit:
        raise PatchError(f"patch path '{path}': index {index} is out of range")
    return index


def apply_patch(document: Mapping[str, Any], patch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A copy of ``document`` with ``patch`` applied; ``PatchError`` says which operation
    does not fit. ``add`` creates missing intermediate maps, so a policy can be added to a
    step that has no ``spec`` yet."""
    result: dict[str, Any] = copy.deepcopy(dict(document))
    for operation in patch:
        op, path = operation.get("op"), str(operation.get("path", ""))
        if op not in OPS:
            raise PatchError(f"patch operation '{op}' is not one of {', '.join(OPS)}")
        parts = _parts(path)
        parent: Any = result
        for key in parts[:-1]:
            if op == "add" and isinstance(parent, dict) and key not in parent:
                parent[key] = {}
            parent = _child(parent, key, path)
        last = parts[-1]
        if isinstance(parent, dict):
            if op == "add":
                parent[last] = copy.deepcopy(operation.get("value"))
            elif last not in parent:
                raise PatchError(f"patch path '{path}': nothing to {op} at '{last}'")
            elif op == "replace":
                parent[last] = copy.deepcopy(operation.get("value"))
            else:
                del parent[last]
        elif isinstance(parent, list):
            index = _index(parent, last, path, allow_end=op == "add")
            if op == "add":
                parent.insert(index, copy.deepcopy(operation.get("value")))
            elif op == "replace":
                parent[index] = copy.deepcopy(operation.get("value"))
            else:
                del parent[index]
        else:
            raise PatchError(f"patch path '{path}' points inside a value that is not a map or list")
    return result


_MISSING = object()


def _resolve(document: Any, parts: Sequence[str]) -> Any:
    """The value at ``parts`` in ``document`` (``_MISSING`` when there is none)."""
    node = document
    for key in parts:
        if isinstance(node, Mapping):
            if key not in node:
                return _MISSING
            node = node[key]
        elif isinstance(node, list):
            try:
                index = int(key)
            except ValueError:
                return _MISSING
            if not 0 <= index < len(node):
                return _MISSING
            node = node[index]
        else:
            return _MISSING
    return node


def carries(
    patch: Sequence[Mapping[str, Any]], patched: Mapping[str, Any], other: Mapping[str, Any]
) -> bool:
    """Whether ``other`` still holds what ``patch`` wrote into ``patched``: at every
    operation's place the same value (the whole list for an element of a list, so an
    index means the same element), under a workflow entry of the same step name. Then the
    patch is in force in ``other`` and its inverse patch undoes it there as well."""
    for operation in patch:
        parts = _parts(str(operation.get("path", "")))
        scope = parts[:-1] if isinstance(_resolve(patched, parts[:-1]), list) else parts
        if _resolve(patched, scope) != _resolve(other, scope):
            return False
        if len(parts) >= 2 and parts[0] == "workflow":
            mine, theirs = _resolve(patched, parts[:2]), _resolve(other, parts[:2])
            if not isinstance(mine, Mapping) or not isinstance(theirs, Mapping):
                return False
            if mine.get("step") != theirs.get("step"):
                return False
    return True


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (python ``code``, SQL) as ``|`` blocks, as people do."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value and not any(line != line.rstrip() for line in value.splitlines()):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _string)


def render(document: Mapping[str, Any]) -> str:
    """The document as YAML, keys in their order, multi-line strings as blocks."""
    return yaml.dump(dict(document), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def unified_diff(before: str, after: str, *, label: str = "playbook") -> str:
    """The unified diff of two playbook texts after normalising both through ``render``."""
    old = render(yaml.safe_load(before)).splitlines(keepends=True)
    new = render(yaml.safe_load(after)).splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, new, f"{label} (before)", f"{label} (after)"))
