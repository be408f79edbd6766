"""Commands the core asks the runtime to carry out (imperative names)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RunTool:
    """Run a step's tool (or tool pipeline) once, for one step run or loop iteration.

    ``tools`` are the step's tool configurations as written (workbook references resolved);
    the executor side renders them against ``context`` so pipelines can see ``_prev``.
    """

    execution_id: str
    step: str
    step_run_id: str
    tools: tuple[dict[str, Any], ...]
    step_input: dict[str, Any]
    context: dict[str, Any]
    iteration: int | None = None
    timeout: float | None = None
    pool: str = "cpu"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def command_id(self) -> str:
        suffix = f"/{self.iteration}" if self.iteration is not None else ""
        return f"{self.step_run_id}{suffix}"
