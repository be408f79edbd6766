"""The ``noop`` tool: does nothing, so routing-only steps still have a tool.

Its result is ``{}``, or the step's rendered ``input`` when it has one, so a routing
step can carry values forward to its arcs and to later steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.ports import ToolContext
from engine.tools.outcome import ToolOutcome


class NoopTool:
    """Returns the step's inputs (``{}`` when there are none)."""

    kind = "noop"

    async def run(
        self, config: Mapping[str, Any], inputs: Mapping[str, Any], ctx: ToolContext
    ) -> ToolOutcome:
        """Return ``ok`` with a copy of ``inputs``; never fails."""
        return ToolOutcome.ok(dict(inputs) if inputs else {})

    async def aclose(self) -> None:
        """Nothing to release."""
