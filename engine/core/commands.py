"""Commands the core asks the runtime to carry out (imperative names)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.core.templates import StepResult, StepResultList

if TYPE_CHECKING:
    from engine.core.events import Event


def command_id(step_run_id: str, iteration: int | None) -> str:
    """A command's id within its execution: its step run, plus ``/iteration`` for one
    iteration of a loop."""
    return step_run_id if iteration is None else f"{step_run_id}/{iteration}"


def global_id(execution_id: str, local_id: str) -> str:
    """A command's id across executions: ``execution_id:command_id``."""
    return f"{execution_id}:{local_id}"


def command_id_of(event: Event) -> str | None:
    """The global id of the command ``event`` reports on; None when it names no step run."""
    if not event.step_run_id:
        return None
    return global_id(event.execution_id, command_id(event.step_run_id, event.iteration))


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
        return command_id(self.step_run_id, self.iteration)

    @property
    def kind(self) -> str:
        """The tool kind when the step has a single tool, else ``pipeline``."""
        return str(self.tools[0].get("kind")) if len(self.tools) == 1 else "pipeline"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form; step results keep their kind so templates read them alike."""
        results = [k for k, v in self.context.items() if isinstance(v, StepResult)]
        loops = [k for k, v in self.context.items() if isinstance(v, StepResultList)]
        return {
            "execution_id": self.execution_id,
            "step": self.step,
            "step_run_id": self.step_run_id,
            "tools": list(self.tools),
            "step_input": self.step_input,
            "context": self.context,
            "step_results": results,
            "loop_results": loops,
            "iteration": self.iteration,
            "timeout": self.timeout,
            "pool": self.pool,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunTool:
        context = dict(data.get("context") or {})
        for name in data.get("step_results") or ():
            if isinstance(context.get(name), dict):
                context[name] = StepResult(context[name])
        for name in data.get("loop_results") or ():
            if isinstance(context.get(name), list):
                context[name] = StepResultList(context[name])
        return cls(
            execution_id=str(data["execution_id"]),
            step=str(data["step"]),
            step_run_id=str(data["step_run_id"]),
            tools=tuple(data.get("tools") or ()),
            step_input=dict(data.get("step_input") or {}),
            context=context,
            iteration=data.get("iteration"),
            timeout=data.get("timeout"),
            pool=str(data.get("pool") or "cpu"),
            meta=dict(data.get("meta") or {}),
        )
