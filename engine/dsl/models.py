"""Pydantic models of the playbook language (apiVersion noetl.io/v2).

The models are frozen and reject unknown keys, so a typo (``nxet:``) is an error that
names the key and the closest valid one. Tool configurations are a union discriminated
by ``kind``; each kind lists exactly the fields it understands.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Template = str  # a string that may hold Jinja2 expressions
TOOL_KINDS = (
    "python",
    "http",
    "postgres",
    "duckdb",
    "playbook",
    "workbook",
    "shell",
    "noop",
    "approval",
)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: float | int | str) -> float:
    """Seconds from ``30``, ``30s``, ``1.5m``, ``24h``, ``250ms``; raise ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '30s'")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError("a duration must be positive")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"'{value}' is not a duration; write seconds (30) or '30s', '5m', '2h'")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


Duration = Annotated[float, Field(description="seconds, or a string such as '30s', '5m', '24h'")]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Metadata(Model):
    name: str = Field(min_length=1)
    path: str | None = None
    description: str | None = None
    version: str | int | float | None = None
    tags: list[str] = Field(default_factory=list)
    labels: dict[str, Any] = Field(default_factory=dict)

    @property
    def catalog_path(self) -> str:
        return (self.path or self.name).strip("/")


class KeychainEntry(Model):
    name: str
    kind: str | None = None
    description: str | None = None


class RetryThen(Model):
    """What a policy rule does: ``do`` plus the fields of that action."""

    do: Literal["retry", "fail", "continue", "jump", "break"]
    attempts: int | Template | None = None
    backoff: Literal["none", "linear", "exponential"] | Template | None = None
    delay: float | Template | None = None
    max_delay: float | Template | None = None
    jitter: bool | float | Template | None = None
    to: str | None = None
    set: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_action(self) -> RetryThen:
        if self.do == "jump" and not self.to:
            raise ValueError("`do: jump` needs `to: <step name>`")
        if self.do == "retry" and isinstance(self.attempts, int) and self.attempts < 1:
            raise ValueError("`attempts` counts every attempt including the first; use 1 or more")
        return self


class ElseRule(Model):
    then: RetryThen

    @model_validator(mode="before")
    @classmethod
    def _bare_then(cls, value: Any) -> Any:
        # `else: {do: continue}` is accepted as a short form of `else: {then: {do: continue}}`.
        if isinstance(value, dict) and "then" not in value and "do" in value:
            return {"then": value}
        return value


class PolicyRule(Model):
    when: Template | bool | None = None
    then: RetryThen | None = None
    else_: ElseRule | None = Field(default=None, alias="else")

    @model_validator(mode="after")
    def _one_form(self) -> PolicyRule:
        if self.else_ is not None and (self.when is not None or self.then is not None):
            raise ValueError("a rule is either `when` + `then` or `else: {then: ...}`, not both")
        if self.else_ is None and self.then is None:
            raise ValueError("a rule needs `then: {do: ...}` (or write `else: {then: ...}`)")
        return self

    @property
    def action(self) -> RetryThen:
        if self.else_ is not None:
            return self.else_.then
        assert self.then is not None
        return self.then


class Policy(Model):
    rules: list[PolicyRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _else_last(self) -> Policy:
        for index, rule in enumerate(self.rules[:-1]):
            if rule.else_ is not None:
                raise ValueError(f"the `else` rule must be the last one (found at rule {index})")
        return self


class ToolSpec(Model):
    policy: Policy | None = None
    timeout: Duration | str | None = None


class ToolAssert(Model):
    expects: list[str] = Field(default_factory=list)
    returns: list[str] = Field(default_factory=list)


class ToolBase(Model):
    name: str | None = None
    desc: str | None = None
    input: dict[str, Any] | None = None
    spec: ToolSpec | None = None
    assert_: ToolAssert | None = Field(default=None, alias="assert")


class ScriptSource(Model):
    type: Literal["file", "inline"] = "file"
    code: Template | None = None

    @model_validator(mode="after")
    def _inline_code(self) -> ScriptSource:
        if self.type == "inline" and self.code is None:
            raise ValueError("an inline script source needs `code`")
        return self


class Script(Model):
    uri: Template = "inline"
    source: ScriptSource = Field(default_factory=ScriptSource)


class PythonTool(ToolBase):
    kind: Literal["python"]
    code: str | None = None
    script: Script | None = None
    libs: dict[str, str] = Field(default_factory=dict)
    timeout: Duration | str | None = None

    @model_validator(mode="after")
    def _code_or_script(self) -> PythonTool:
        if (self.code is None) == (self.script is None):
            raise ValueError("a python tool needs exactly one of `code` or `script`")
        return self


class HttpTool(ToolBase):
    kind: Literal["http"]
    method: str = "GET"
    url: Template
    headers: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] | Template = Field(default_factory=dict)
    json_: Any = Field(default=None, alias="json")
    body: Any = None
    data: Any = None
    auth: str | dict[str, Any] | None = None
    timeout: Duration | str | None = None


class PostgresTool(ToolBase):
    kind: Literal["postgres"]
    auth: str | dict[str, Any] | None = None
    query: Template | None = None
    command: Template | None = None
    params: list[Any] | Template | None = None
    timeout: Duration | str | None = None

    @model_validator(mode="after")
    def _query_or_command(self) -> PostgresTool:
        if (self.query is None) == (self.command is None):
            raise ValueError("a postgres tool needs exactly one of `query` or `command`")
        return self


class DuckdbTool(ToolBase):
    kind: Literal["duckdb"]
    query: Template | None = None
    command: Template | None = None
    database: str | None = None
    params: list[Any] | dict[str, Any] | Template | None = None
    auth: str | dict[str, Any] | None = None
    timeout: Duration | str | None = None

    @model_validator(mode="after")
    def _query_or_command(self) -> DuckdbTool:
        if (self.query is None) == (self.command is None):
            raise ValueError("a duckdb tool needs exactly one of `query` or `command`")
        return self


class PlaybookTool(ToolBase):
    kind: Literal["playbook"]
    path: Template
    version: int | Template | None = None


class WorkbookTool(ToolBase):
    kind: Literal["workbook"]
    name: str


class ShellTool(ToolBase):
    kind: Literal["shell"]
    cmds: list[Template] = Field(min_length=1)
    env: dict[str, Any] = Field(default_factory=dict)
    cwd: str | None = None
    timeout: Duration | str | None = None


class NoopTool(ToolBase):
    kind: Literal["noop"]


class ApprovalTool(ToolBase):
    kind: Literal["approval"]
    prompt: Template
    approvers: list[str] = Field(default_factory=list)
    timeout: Duration | str | None = None
    on_timeout: Literal["reject", "approve"] = "reject"


Tool = Annotated[
    PythonTool
    | HttpTool
    | PostgresTool
    | DuckdbTool
    | PlaybookTool
    | WorkbookTool
    | ShellTool
    | NoopTool
    | ApprovalTool,
    Field(discriminator="kind"),
]


class LoopSpec(Model):
    mode: Literal["sequential", "parallel"] = "sequential"
    max_in_flight: int | None = Field(default=None, ge=1)


class Loop(Model):
    in_: Template | list[Any] = Field(alias="in")
    iterator: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    spec: LoopSpec = Field(default_factory=LoopSpec)


class Resources(Model):
    cpu: float | None = None
    memory_mb: int | None = None
    gpu: int | None = None


class Runtime(Model):
    pool: str = "cpu"
    resources: Resources | None = None


class StepSpec(Model):
    timeout: Duration | str | None = None
    runtime: Runtime | None = None
    idempotent: bool | None = None


class Arc(Model):
    step: str
    when: Template | bool | None = None
    set: dict[str, Any] = Field(default_factory=dict)
    desc: str | None = None


class NextSpec(Model):
    mode: Literal["exclusive", "inclusive"] = "exclusive"


class Next(Model):
    spec: NextSpec = Field(default_factory=NextSpec)
    arcs: list[Arc] = Field(default_factory=list)


class Step(Model):
    step: str = Field(min_length=1)
    desc: str | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    tool: Tool | list[Tool]
    loop: Loop | None = None
    spec: StepSpec | None = None
    next: Next | None = None
    set: dict[str, Any] = Field(default_factory=dict)

    @field_validator("next", mode="before")
    @classmethod
    def _next_shorthand(cls, value: Any) -> Any:
        # `next: [{step: a}]` and `next: a` are accepted as short forms of `next: {arcs: ...}`.
        if isinstance(value, str):
            return {"arcs": [{"step": value}]}
        if isinstance(value, list):
            return {"arcs": [{"step": item} if isinstance(item, str) else item for item in value]}
        return value

    @field_validator("tool")
    @classmethod
    def _pipeline_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("a tool pipeline needs at least one tool")
            names = [tool.name for tool in value if tool.name]
            if len(names) != len(set(names)):
                raise ValueError("tool names inside a pipeline must be unique")
        return value

    @property
    def tools(self) -> list[Any]:
        return list(self.tool) if isinstance(self.tool, list) else [self.tool]

    @property
    def arcs(self) -> list[Arc]:
        return list(self.next.arcs) if self.next else []

    @property
    def mode(self) -> str:
        return self.next.spec.mode if self.next else "exclusive"


class WorkbookEntry(Model):
    name: str
    desc: str | None = None
    tool: Tool
    assert_: ToolAssert | None = Field(default=None, alias="assert")


class ExecutorSpec(Model):
    entry_step: str | None = None


class Executor(Model):
    profile: str | None = None
    version: str | None = None
    spec: ExecutorSpec = Field(default_factory=ExecutorSpec)


class WorkerPool(Model):
    name: str
    cpu: float | None = None
    memory_mb: int | None = None
    gpu: int | None = None
    cost_per_hour: float | None = None


class Playbook(Model):
    api_version: Literal["noetl.io/v2"] = Field(alias="apiVersion")
    kind: Literal["Playbook"]
    metadata: Metadata
    workload: dict[str, Any] = Field(default_factory=dict)
    keychain: list[KeychainEntry] = Field(default_factory=list)
    workbook: list[WorkbookEntry] = Field(default_factory=list)
    executor: Executor = Field(default_factory=Executor)
    pools: list[WorkerPool] = Field(default_factory=list)
    workflow: list[Step] = Field(min_length=1)

    @property
    def path(self) -> str:
        return self.metadata.catalog_path

    @property
    def entry_step(self) -> str:
        if self.executor.spec.entry_step:
            return self.executor.spec.entry_step
        names = [step.step for step in self.workflow]
        return "start" if "start" in names else names[0]

    def step(self, name: str) -> Step:
        for step in self.workflow:
            if step.step == name:
                return step
        raise KeyError(name)

    @property
    def tool_kinds(self) -> set[str]:
        """Every tool kind the playbook can run (workbook tools included)."""
        kinds = {tool.kind for step in self.workflow for tool in step.tools}
        kinds.update(entry.tool.kind for entry in self.workbook)
        return kinds

    def arcs_of(self, step: Step) -> list[Arc]:
        """The step's arcs; a step without `next` routes to a step named `end` if there is one."""
        if step.next is None and step.step != "end" and any(s.step == "end" for s in self.workflow):
            return [Arc(step="end")]
        return step.arcs

    def workbook_tool(self, name: str) -> Any:
        for entry in self.workbook:
            if entry.name == name:
                return entry.tool
        raise KeyError(name)
