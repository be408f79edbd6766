"""The inverse patch a rollback applies turns the patched playbook back into the old one,
whatever the operations did (maps created on the way, list inserts, removals)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from learning.policy.patch import apply_patch
from noetl_agent.policy_changes import inverse_patch
from tests.policy.conftest import FLAKY

DOCUMENT = yaml.safe_load(FLAKY)
PATCHES: list[list[dict[str, Any]]] = [
    [{"op": "add", "path": "/workflow/0/spec/runtime/pool", "value": "large"}],
    [{"op": "add", "path": "/workflow/0/tool/input/extra", "value": 1}],
    [{"op": "replace", "path": "/workload/counter", "value": "x"}],
    [{"op": "remove", "path": "/workload/counter"}],
    [
        {"op": "add", "path": "/pools", "value": [{"name": "a"}]},
        {"op": "add", "path": "/pools/0", "value": {"name": "b"}},
        {"op": "add", "path": "/pools/-", "value": {"name": "c"}},
        {"op": "remove", "path": "/pools/1"},
        {"op": "replace", "path": "/pools/0/name", "value": "z"},
    ],
]


@pytest.mark.parametrize("patch", PATCHES)
def test_the_inverse_restores_the_document(patch):
    patched = apply_patch(DOCUMENT, patch)
    assert patched != DOCUMENT
    assert apply_patch(patched, inverse_patch(DOCUMENT, patch)) == DOCUMENT


def test_a_created_map_is_removed_whole():
    patch = PATCHES[0]
    assert inverse_patch(DOCUMENT, patch) == [{"op": "remove", "path": "/workflow/0/spec"}]
