"""A proposal's change to one catalog version: the patched text, its diff and its inverse.

``change_of`` applies a patch to a version's document and checks the result is a valid
playbook, so a proposal that would not run is refused when it is made, not when it is
approved. The inverse patch turns the new version back into the old one; a rollback
proposal is that inverse against the applied version.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from engine.dsl.loader import parse_playbook
from engine.errors import Issue, PlaybookInvalid
from engine.ports import CatalogEntry
from learning.errors import PatchError
from learning.policy.patch import apply_patch, pointer, render, unified_diff


@dataclass(frozen=True, slots=True)
class Change:
    """A patch applied to one catalog version."""

    entry: CatalogEntry
    content: str  # the patched playbook, as YAML
    diff: str  # unified diff of the version's text against ``content``
    inverse: list[dict[str, Any]]  # patch turning ``content`` back into the version


def _decode(path: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _inverse_of(document: Any, operation: Mapping[str, Any]) -> dict[str, Any]:
    """The operation that undoes ``operation`` on ``document`` (which it applies to)."""
    op, path = operation["op"], str(operation["path"])
    parts = _decode(path)
    parent = document
    for depth, key in enumerate(parts[:-1]):
        if isinstance(parent, dict) and key not in parent:  # ``add`` creates this map
            return {"op": "remove", "path": pointer(*parts[: depth + 1])}
        parent = parent[key] if isinstance(parent, dict) else parent[int(key)]
    last = parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "add":
            return {"op": "remove", "path": pointer(*parts[:-1], index)}
        old = copy.deepcopy(parent[index])
        return {"op": "add" if op == "remove" else "replace", "path": path, "value": old}
    if op == "add" and last not in parent:
        return {"op": "remove", "path": path}
    value = copy.deepcopy(parent[last])
    return {"op": "add" if op == "remove" else "replace", "path": path, "value": value}


def inverse_patch(
    document: Mapping[str, Any], patch: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The patch that turns ``apply_patch(document, patch)`` back into ``document``."""
    current: dict[str, Any] = copy.deepcopy(dict(document))
    inverse: list[dict[str, Any]] = []
    for operation in patch:
        after = apply_patch(current, [operation])  # PatchError when it does not fit
        inverse.insert(0, _inverse_of(current, operation))
        current = after
    return inverse


def _patch_problem(exc: PatchError, entry: CatalogEntry) -> PlaybookInvalid:
    return PlaybookInvalid(
        [
            Issue(
                "patch",
                f"the patch does not fit {entry.path} version {entry.version}: {exc}",
                hint="paths are JSON pointers into the playbook document, e.g. "
                "/workflow/0/tool/spec/policy; see `noetl-agent catalog list` for versions",
            )
        ]
    )


def change_of(entry: CatalogEntry, patch: Sequence[Mapping[str, Any]]) -> Change:
    """Apply ``patch`` to ``entry``; raise ``PlaybookInvalid`` when the patch does not fit
    the document, changes nothing, or leaves a playbook that does not validate."""
    if not patch:
        raise PlaybookInvalid([Issue("patch", "the patch is empty; give at least one operation")])
    document = yaml.safe_load(entry.content)
    try:
        patched = apply_patch(document, patch)
        inverse = inverse_patch(document, patch)
    except PatchError as exc:
        raise _patch_problem(exc, entry) from None
    except (KeyError, ValueError, IndexError, TypeError) as exc:
        raise _patch_problem(PatchError(f"malformed operation ({exc})"), entry) from None
    if patched == document:
        raise PlaybookInvalid(
            [
                Issue(
                    "patch",
                    f"the patch changes nothing in {entry.path} version {entry.version}",
                    hint="the playbook already has what the patch sets",
                )
            ]
        )
    content = render(patched)
    try:
        playbook = parse_playbook(content, source=f"{entry.path} (patched)")
    except PlaybookInvalid as exc:
        exc.source = f"{entry.path} version {entry.version} with the patch applied"
        raise
    if playbook.path != entry.path:
        raise PlaybookInvalid(
            [
                Issue(
                    "metadata.path",
                    f"the patch moves the playbook from {entry.path} to {playbook.path}",
                    hint="a proposal changes one playbook; leave metadata.path alone",
                )
            ]
        )
    return Change(entry, content, unified_diff(entry.content, content, label=entry.path), inverse)
