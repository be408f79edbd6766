"""The tool executors by kind, created on first use so start-up imports stay light."""

from __future__ import annotations

import importlib
from typing import Any

from engine.ports import ToolExecutor

_FACTORIES: dict[str, tuple[str, str]] = {
    "python": ("engine.tools.python", "PythonTool"),
    "shell": ("engine.tools.shell", "ShellTool"),
    "http": ("engine.tools.http", "HttpTool"),
    "duckdb": ("engine.tools.duckdb", "DuckdbTool"),
    "postgres": ("engine.tools.postgres", "PostgresTool"),
    "noop": ("engine.tools.noop", "NoopTool"),
}


class ToolRegistry:
    """Holds one executor per kind; ``aclose`` closes those that were created."""

    def __init__(self, **options: Any) -> None:
        self._executors: dict[str, ToolExecutor] = {}
        self._options = options

    def register(self, executor: ToolExecutor) -> None:
        self._executors[executor.kind] = executor

    def get(self, kind: str) -> ToolExecutor | None:
        executor = self._executors.get(kind)
        if executor is None and kind in _FACTORIES:
            module_name, class_name = _FACTORIES[kind]
            factory = getattr(importlib.import_module(module_name), class_name)
            executor = factory(**self._options.get(kind, {}))
            self._executors[kind] = executor
        return executor

    async def aclose(self) -> None:
        for executor in list(self._executors.values()):
            await executor.aclose()
        self._executors.clear()
