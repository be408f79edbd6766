"""Playbook generation: descriptions in words → validated, dry-run drafts, gated until a
human promotes those that run code (see :mod:`noetl_agent.generation.pipeline`).

Names are imported on first use, so installing the gate (``noetl-agent run``) does not
load the planner and the dry-run machinery."""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "Constraints": "pipeline",
    "Draft": "pipeline",
    "Generator": "pipeline",
    "generate": "pipeline",
    "DryRunReport": "dryrun",
    "dry_run": "dryrun",
    "DraftNotPromoted": "errors",
    "GenerationError": "errors",
    "InvalidRequest": "errors",
    "DraftGate": "gate",
    "DraftStatus": "gate",
    "draft_status": "gate",
    "gate_enabled": "gate",
    "install_draft_gate": "gate",
    "promote": "gate",
    "OfflinePlanner": "planner",
    "Plan": "planner",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'noetl_agent.generation' has no attribute {name!r}")
    return getattr(importlib.import_module(f"noetl_agent.generation.{module}"), name)
