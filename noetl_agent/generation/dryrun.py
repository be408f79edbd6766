"""Dry runs: execute a draft with every side effect replaced, to prove it routes and renders.

:func:`dry_run` runs the playbook on a private engine: in-memory event store and
catalog, no credentials, no command queue, no lock files. Its tool registry
(:class:`DryRunTools`) holds no real executor of a tool that reaches outside: ``http``,
``postgres``, ``duckdb``, ``shell`` and ``python`` are answered by :class:`StandIn`
executors that check the rendered configuration (a URL that is a URL, SQL that is text,
Python that compiles) and return a recorded output for the step when one is given, else
one synthesised to the shape the playbook's templates read
(:mod:`~noetl_agent.generation.shapes`). ``noop`` runs for real. Approvals are approved
by the dry run itself; sub-playbooks run on the same private engine, from the real
catalog's latest version when one is given, else from a stand-in that does nothing.

So everything the engine does (templating, loops, policies, arcs, joins, sub-playbooks)
runs for real, and nothing reaches a service, a database, a file or a process.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from engine.adapters.memory.stores import MemoryCatalogStore, MemoryEventStore
from engine.dsl.loader import parse_playbook
from engine.dsl.models import Playbook, PlaybookTool
from engine.errors import NoetlError, NotFound, PlaybookInvalid
from engine.ports import CatalogStore, ToolContext, ToolExecutor
from engine.runtime.embedded import Engine
from engine.tools.noop import NoopTool
from engine.tools.outcome import ToolOutcome
from engine.tools.registry import ToolRegistry
from noetl_agent.executions import pending_approvals, summarize
from noetl_agent.generation.shapes import Shape, result_shapes, synthesise

STOOD_IN = ("http", "postgres", "duckdb", "shell", "python")
DEFAULT_TIMEOUT = 30.0
MAX_PAUSES = 50  # approvals the dry run decides before it gives up
_URL = re.compile(r"^https?://[^\s/]+")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class StoodIn:
    """One tool call the dry run answered in place of the real tool."""

    step: str
    kind: str
    request: dict[str, Any]
    output: Any
    source: str  # recorded | synthesised

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "kind": self.kind,
            "request": self.request,
            "output": self.output,
            "source": self.source,
        }


@dataclass(slots=True)
class DryRunReport:
    """How the dry run went: ``passed`` when the execution completed."""

    status: str  # completed | failed | paused | cancelled | running | invalid
    result: Any = None
    error: dict[str, Any] | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    stood_in: list[StoodIn] = field(default_factory=list)
    approvals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "completed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "steps": self.steps,
            "stood_in": [call.to_dict() for call in self.stood_in],
            "approvals": self.approvals,
            "warnings": self.warnings,
        }


class StandIn:
    """Answers one tool kind in a dry run (see the module docstring)."""

    def __init__(
        self,
        kind: str,
        shapes: Mapping[str, Shape],
        loops: frozenset[str],
        recorded: Mapping[str, Any],
        calls: list[StoodIn],
    ) -> None:
        self.kind = kind
        self._shapes = shapes
        self._loops = loops
        self._recorded = recorded
        self._calls = calls

    async def run(
        self, config: Mapping[str, Any], inputs: Mapping[str, Any], ctx: ToolContext
    ) -> ToolOutcome:
        """A recorded or synthesised output, or a failure naming a configuration that
        could not run for real."""
        problem, request = _check(self.kind, config)
        if problem is not None:
            return ToolOutcome.fail("validation", f"{self.kind} tool: {problem}")
        if ctx.step in self._recorded:
            output, source = self._recorded[ctx.step], "recorded"
        else:
            output, source = self._synthesise(ctx.step, config), "synthesised"
        self._calls.append(StoodIn(ctx.step, self.kind, request, output, source))
        return ToolOutcome.ok(output, http_status=200 if self.kind == "http" else None)

    def _synthesise(self, step: str, config: Mapping[str, Any]) -> Any:
        shape = self._shapes.get(step)
        if step in self._loops and shape is not None:
            shape = shape.element  # a loop step's result is the list of its iterations
        if self.kind == "http":
            body = shape.keys.get("json") if shape else None
            result: dict[str, Any] = {
                "status_code": 200,
                "headers": {"content-type": "application/json"},
                "json": synthesise(body, "json") if body else {"ok": True},
            }
            for key, child in shape.keys.items() if shape else []:
                result.setdefault(key, synthesise(child, key))
            return result
        if self.kind in ("postgres", "duckdb"):
            if config.get("command") is not None:
                return {"rowcount": 1, "status": "OK"}
            row = shape.element if shape is not None and shape.listed else None
            return [_row(row), _row(row)]
        if self.kind == "shell":
            return {"stdout": "", "stderr": "", "exit_code": 0}
        if shape is None:
            return {}
        return synthesise(shape, step)

    async def aclose(self) -> None:
        """Nothing to release."""


class DryRunTools(ToolRegistry):
    """A tool registry holding stand-ins for every tool that reaches outside, and the
    real ``noop``; every other kind has no executor."""

    def __init__(self, playbooks: list[Playbook], recorded: Mapping[str, Any]) -> None:
        super().__init__()
        self.calls: list[StoodIn] = []
        shapes: dict[str, Shape] = {}
        loops: set[str] = set()
        for playbook in playbooks:
            shapes.update(result_shapes(playbook))
            loops.update(step.step for step in playbook.workflow if step.loop is not None)
        self._stand_ins: dict[str, ToolExecutor] = {
            kind: StandIn(kind, shapes, frozenset(loops), recorded, self.calls) for kind in STOOD_IN
        }
        self._stand_ins["noop"] = NoopTool()

    def get(self, kind: str) -> ToolExecutor | None:
        return self._stand_ins.get(kind)

    async def aclose(self) -> None:
        """Nothing to release."""


async def dry_run(
    content: str,
    *,
    workload: Mapping[str, Any] | None = None,
    recorded: Mapping[str, Any] | None = None,
    catalog: CatalogStore | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> DryRunReport:
    """Run the playbook YAML ``content`` with every side effect replaced (see the module
    docstring). ``recorded`` maps step names to outputs to use instead of synthesised
    ones; ``catalog`` is where sub-playbooks are read from (never written)."""
    try:
        playbook = parse_playbook(content)
    except PlaybookInvalid as exc:
        return DryRunReport("invalid", error={"message": str(exc)})
    warnings: list[str] = []
    events, private = MemoryEventStore(), MemoryCatalogStore()
    children = await _copy_children(playbook, catalog, private, warnings)
    tools = DryRunTools([playbook, *children], recorded or {})
    engine = Engine(events, private, tools=tools)
    approvals: list[str] = []
    try:
        entry = await engine.register(content)
        execution_id = await engine.execute(entry.path, workload=dict(workload or {}))
        outcome = await engine.wait(execution_id, timeout)
        for _ in range(MAX_PAUSES):
            if outcome.status != "paused":
                break
            for pending in await pending_approvals(events):
                approvals.append(pending.approval_id)
                await engine.decide_approval(
                    pending.approval_id, approved=True, decided_by="dry-run", comment="dry run"
                )
            outcome = await engine.wait(execution_id, timeout)
        summary = await events.get_execution(execution_id)
        view = summarize(summary, await events.read(execution_id))
    except TimeoutError:
        return DryRunReport(
            "running",
            error={"message": f"the dry run did not finish within {timeout:g}s"},
            stood_in=tools.calls,
            approvals=approvals,
            warnings=warnings,
        )
    except NoetlError as exc:
        return DryRunReport("failed", error={"message": str(exc)}, stood_in=tools.calls)
    finally:
        await engine.aclose()
    steps = [{"step": run.step, "status": run.status, "error": run.error} for run in view.steps]
    return DryRunReport(
        outcome.status,
        result=outcome.result,
        error=outcome.error,
        steps=steps,
        stood_in=tools.calls,
        approvals=approvals,
        warnings=warnings,
    )


async def _copy_children(
    playbook: Playbook, catalog: CatalogStore | None, private: CatalogStore, warnings: list[str]
) -> list[Playbook]:
    """Put every sub-playbook the draft calls into the private catalog (two levels deep)."""
    found: list[Playbook] = []
    queue = [(playbook, 0)]
    seen: set[str] = set()
    while queue:
        parent, depth = queue.pop(0)
        for step in parent.workflow:
            for tool in step.tools:
                if not isinstance(tool, PlaybookTool) or "{{" in tool.path:
                    continue
                path = tool.path.strip("/")
                if path in seen:
                    continue
                seen.add(path)
                content = None
                if catalog is not None:
                    try:
                        content = (await catalog.get(path)).content
                    except NotFound:
                        content = None
                if content is None or depth >= 2:
                    content = _stand_in_child(path)
                    warnings.append(
                        f"sub-playbook `{path}` is not in the catalog: the dry run used a "
                        "stand-in that does nothing; register it before a live run"
                    )
                child = parse_playbook(content)
                await private.register(
                    child.path, child.metadata.name, content, description=None, source=None
                )
                found.append(child)
                queue.append((child, depth + 1))
    return found


def _stand_in_child(path: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]+", "_", path) or "child"
    document = {
        "apiVersion": "noetl.io/v2",
        "kind": "Playbook",
        "metadata": {"name": name, "path": path},
        "workflow": [{"step": "start", "tool": {"kind": "noop"}}],
    }
    return yaml.safe_dump(document, sort_keys=False)


def _row(shape: Shape | None) -> dict[str, Any]:
    if shape is None or not shape.keys:
        return {"id": 1}
    value = synthesise(shape, "row")
    return value if isinstance(value, dict) else {"value": value}


def _check(kind: str, config: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """What a real run of this rendered configuration would send, or what is wrong with it."""
    if kind == "http":
        url, method = config.get("url"), str(config.get("method") or "GET").upper()
        request = {"method": method, "url": url}
        if not isinstance(url, str) or not _URL.match(url):
            return f"`url` rendered to {url!r}, not an http(s) URL", request
        if method not in _METHODS:
            return f"`method` {method!r} is not an HTTP method", request
        return None, request
    if kind in ("postgres", "duckdb"):
        field_name = "command" if config.get("command") is not None else "query"
        sql = config.get(field_name)
        request = {field_name: sql}
        if not isinstance(sql, str) or not sql.strip():
            return f"`{field_name}` rendered to {sql!r}, not SQL text", request
        return None, request
    if kind == "shell":
        cmds = config.get("cmds")
        request = {"cmds": cmds}
        if not isinstance(cmds, list) or not all(isinstance(c, str) and c for c in cmds):
            return f"`cmds` rendered to {cmds!r}, not a list of commands", request
        return None, request
    code = config.get("code")
    request = {"code_lines": len(str(code).splitlines())}
    if not isinstance(code, str):
        return "no `code` to run", request
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return f"the code does not compile: {exc.msg} (line {exc.lineno})", request
    names = {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    assigned = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    if "main" not in names and "result" not in assigned:
        return "the code neither defines `main(**input)` nor assigns `result`", request
    return None, request


__all__ = ["STOOD_IN", "DryRunReport", "DryRunTools", "StandIn", "StoodIn", "dry_run"]
