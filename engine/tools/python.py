"""The ``python`` tool: step code run in a pool of worker processes, apart from the engine.

A step's code can crash its process, loop forever or call ``sys.exit``; none of that may
reach the orchestrator. So the code never runs here: ``PythonTool`` keeps a pool of
long-lived child processes (``python -m engine.tools.pyworker``), hands each run to a free
one and waits for its reply. Children start lazily on first use, serve many runs (the cost
per run is one request/reply over pipes) and are replaced when they die, time out, are
cancelled or have served ``max_runs_per_worker`` runs.

How a run can end, and what the step sees::

    the code returns / sets ``result``    ok, data = the value (JSON-converted)
    the code raises                       error kind=python, code=<exception class>
    the code calls sys.exit               error kind=python, code=SystemExit
    the process dies (os._exit, signal)   error kind=python, code=WorkerDied
    the timeout passes                    error kind=timeout, retryable (the child is killed)
    the configuration is unusable         error kind=validation (nothing runs)

Configuration (``tool`` in YAML): ``code`` or ``script: {uri, source: {type: file}}``,
optional ``libs: {alias: module}`` and ``timeout`` (seconds; the smaller of it and the
step's timeout applies). The code styles and the wire protocol are described in
``engine.tools.pyworker``. Prints of the code come back in ``meta["stdout"]`` and
``meta["stderr"]`` (present when not empty, the last 8 KB), and what the run cost the
child process in ``meta["usage"]`` (``cpu_ms``, ``peak_rss_kb``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.core.templates import StepResultList
from engine.ports import ToolContext
from engine.tools.config import ConfigInvalid, seconds
from engine.tools.outcome import ToolOutcome

__all__ = ["PythonTool", "resolve_script"]

WORKER_MODULE = "engine.tools.pyworker"
START_TIMEOUT = 30.0
"""Seconds a new worker may take to report that it is ready."""
STOP_GRACE = 1.0
"""Seconds a retired worker gets to exit by itself before it is killed."""
_STREAM_LIMIT = 1 << 20
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


class _WorkerStartError(Exception):
    """A worker process could not be started."""


class _WorkerDied(Exception):
    """The worker process ended during a run; the message says how."""


class _Worker:
    """One child process and the two pipes of its protocol."""

    __slots__ = ("proc", "runs")

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.runs = 0

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def read(self) -> dict[str, Any]:
        """The next reply frame; ``IncompleteReadError`` when the child is gone."""
        stdout = self.proc.stdout
        assert stdout is not None
        size = int.from_bytes(await stdout.readexactly(4), "big")
        reply: dict[str, Any] = json.loads(await stdout.readexactly(size))
        return reply

    async def send(self, body: bytes) -> None:
        """Send one request frame; ``ConnectionError`` when the child is gone."""
        stdin = self.proc.stdin
        assert stdin is not None
        self.runs += 1
        stdin.write(len(body).to_bytes(4, "big") + body)
        await stdin.drain()
        if stdin.is_closing():  # a failed write closes the pipe; drain may not say so yet
            raise ConnectionResetError("the worker's input pipe is closed")

    async def exit_status(self) -> str:
        """How the process ended, for a message (waits briefly for it to be reaped)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), STOP_GRACE)
        code = self.proc.returncode
        if code is None:
            return "it stopped answering"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    async def stop(self, *, kill: bool) -> None:
        """End the process: at once when ``kill``, else by closing its input first."""
        if not kill and self.alive and self.proc.stdin is not None:
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), STOP_GRACE)
            except TimeoutError:
                kill = True
        if kill and self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()


def resolve_script(uri: str, base_dir: str | None) -> Path:
    """Find a script file named by ``script.uri``.

    Relative paths are taken from ``base_dir`` (the playbook's directory; the current
    directory when None). A path that is not there is tried with its leading parts
    dropped one at a time, so ``./fixtures/playbooks/x/scripts/a.py`` written for another
    checkout layout still finds ``<base_dir>/scripts/a.py``. Raises ``ConfigInvalid`` naming
    the path when no candidate exists.
    """
    base = Path(base_dir) if base_dir else Path.cwd()
    path = Path(uri).expanduser()
    if path.is_absolute():
        if path.is_file():
            return path
        parts = path.parts[1:]
    else:
        parts = tuple(p for p in path.parts if p != ".")
    for start in range(len(parts)):
        candidate = base.joinpath(*parts[start:])
        if candidate.is_file():
            return candidate
    raise ConfigInvalid(
        f"python script {uri!r} was not found under {str(base)!r} (nor any shorter"
        " ending of that path); fix script.uri, relative to the playbook's directory"
    )


def _source(config: Mapping[str, Any], ctx: ToolContext) -> tuple[str, str]:
    """The code to run and the file name its tracebacks show."""
    code = config.get("code")
    if code is not None and not isinstance(code, str):
        raise ConfigInvalid(f"python tool: code must be a string, got {type(code).__name__}")
    if code and code.strip():
        return code, f"<{ctx.step}>"
    script = config.get("script")
    if script is None:
        raise ConfigInvalid("python tool needs `code` (Python source) or `script: {uri: path}`")
    if isinstance(script, str):
        script = {"uri": script}
    if not isinstance(script, Mapping) or not isinstance(script.get("uri"), str):
        raise ConfigInvalid("python tool: script must be a mapping with a `uri` string")
    source = script.get("source") or {}
    kind = source.get("type", "file") if isinstance(source, Mapping) else source
    if kind != "file":
        raise ConfigInvalid(
            f"python tool: script.source.type {kind!r} is not supported; use 'file'"
        )
    path = resolve_script(script["uri"], ctx.base_dir)
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigInvalid(f"python script {str(path)!r} cannot be read: {e}") from e


def _libs(config: Mapping[str, Any]) -> dict[str, str]:
    libs = config.get("libs") or {}
    if not isinstance(libs, Mapping) or not all(
        isinstance(k, str) and k.isidentifier() and isinstance(v, str) for k, v in libs.items()
    ):
        raise ConfigInvalid("python tool: libs must map a name to a module, e.g. {pd: pandas}")
    return dict(libs)


def _seconds(value: Any, where: str) -> float | None:
    """``value`` as seconds (a number, or text such as '30s'); None when not given."""
    if value is None or value == "":
        return None
    return seconds(value, where)


def _outputs(reply: Mapping[str, Any]) -> dict[str, Any]:
    return {key: reply[key] for key in ("stdout", "stderr", "usage") if reply.get(key)}


class PythonTool:
    """Runs ``python`` steps in a pool of worker processes (see the module docstring).

    ``pool_size`` bounds the runs in flight (more wait for a free worker); by default
    ``max(2, cpu count)``. A worker is replaced after ``max_runs_per_worker`` runs (None:
    never), so state that step code leaves behind does not accumulate. ``default_timeout``
    applies when neither the step nor the tool sets one. Use from one event loop.
    """

    kind = "python"

    def __init__(
        self,
        *,
        pool_size: int | None = None,
        max_runs_per_worker: int | None = 1000,
        default_timeout: float | None = None,
    ) -> None:
        size = pool_size if pool_size is not None else max(2, os.cpu_count() or 1)
        if size < 1:
            raise ValueError(f"pool_size must be at least 1, got {size}")
        self.pool_size = size
        self.max_runs_per_worker = max_runs_per_worker
        self.default_timeout = default_timeout
        self._slots = asyncio.Semaphore(size)
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False
        self._drained = asyncio.Event()
        self._env: dict[str, str] | None = None
        self._warming: asyncio.Future[_Worker] | None = None

    async def run(
        self, config: Mapping[str, Any], inputs: Mapping[str, Any], ctx: ToolContext
    ) -> ToolOutcome:
        """Run the step's code once; every failure comes back as ``ToolOutcome.fail``."""
        try:
            source, filename = _source(config, ctx)
            request: dict[str, Any] = {"code": source, "file": filename, "inputs": dict(inputs)}
            libs = _libs(config)
            if libs:
                request["libs"] = libs
            loop_inputs = [name for name in inputs if isinstance(inputs[name], StepResultList)]
            if loop_inputs:
                request["loop_results"] = loop_inputs
            tool_timeout = _seconds(config.get("timeout"), "python tool timeout")
            step_timeout = _seconds(ctx.timeout, "step timeout")
        except ConfigInvalid as e:
            return ToolOutcome.fail("validation", str(e))
        limits = [t for t in (step_timeout, tool_timeout) if t is not None]
        timeout = min(limits) if limits else self.default_timeout
        try:
            body = json.dumps(request, default=str).encode()
        except ValueError as e:
            return ToolOutcome.fail("validation", f"python step inputs are not JSON: {e}")
        if self._closed:
            return ToolOutcome.fail("cancelled", "the python tool was shut down")
        try:
            reply = await self._call(body, timeout)
        except TimeoutError:
            assert timeout is not None
            which = "tool's `timeout`" if timeout == tool_timeout else "step's spec.timeout"
            return ToolOutcome.fail(
                "timeout",
                f"python step exceeded its {timeout:g}s timeout; raise the {which}"
                " or make the code faster",
                retryable=True,
            )
        except _WorkerStartError as e:
            return ToolOutcome.fail("python", str(e), code="WorkerStartError")
        except _WorkerDied as e:
            if self._closed:
                return ToolOutcome.fail("cancelled", "the python tool was shut down mid-run")
            return ToolOutcome.fail(
                "python",
                f"the process running this python step died ({e}): the code called"
                " os._exit, crashed in a native extension or was killed (for example for"
                " using too much memory); fix the code or give the step more memory",
                code="WorkerDied",
            )
        if reply.get("ok"):
            return ToolOutcome.ok(reply.get("result"), **_outputs(reply))
        error = reply.get("error") or {}
        return ToolOutcome.fail(
            "python",
            str(error.get("message") or "python step failed"),
            code=error.get("code"),
            traceback=error.get("traceback", ""),
            **_outputs(reply),
        )

    async def _call(self, body: bytes, timeout: float | None) -> dict[str, Any]:
        """One round trip on a pooled worker; returns the reply.

        A worker found dead before it took the request (it died while idle) is replaced
        and the request sent again, once. Raises ``TimeoutError`` (the worker is killed),
        ``_WorkerDied`` or ``_WorkerStartError``.
        """
        for attempt in (1, 2):
            worker = await self._acquire()
            reusable = False
            try:
                async with asyncio.timeout(timeout):
                    try:
                        await worker.send(body)
                    except ConnectionError:
                        if attempt == 1:
                            continue
                        raise
                    reply = await worker.read()
                reusable = True
                return reply
            except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                raise _WorkerDied(await worker.exit_status()) from None
            finally:
                self._release(worker, reusable=reusable)
        raise AssertionError("unreachable")

    async def warm(self) -> None:
        """Start one worker ahead of the first run, so that run does not wait for a spawn."""
        if self._closed or self._idle or self._busy or self._warming is not None:
            return
        self._warming = asyncio.ensure_future(self._spawn())
        try:
            worker = await self._warming
        finally:
            self._warming = None
        self._idle.append(worker)

    async def _acquire(self) -> _Worker:
        await self._slots.acquire()
        try:
            if not self._idle and self._warming is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._warming)
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    break
                self._retire(worker, kill=True)
            else:
                worker = await self._spawn()
        except BaseException:
            self._slots.release()
            raise
        self._busy.add(worker)
        self._drained.clear()
        return worker

    def _release(self, worker: _Worker, *, reusable: bool) -> None:
        self._busy.discard(worker)
        if not self._busy:
            self._drained.set()
        limit = self.max_runs_per_worker
        if reusable and not self._closed and (limit is None or worker.runs < limit):
            self._idle.append(worker)
        else:
            self._retire(worker, kill=not reusable)
        self._slots.release()

    async def _spawn(self) -> _Worker:
        if self._env is None:
            path = os.environ.get("PYTHONPATH")
            self._env = {
                **os.environ,
                "PYTHONPATH": _PROJECT_ROOT + (os.pathsep + path if path else ""),
            }
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                WORKER_MODULE,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=self._env,
                limit=_STREAM_LIMIT,
                start_new_session=True,
            )
        except OSError as e:
            raise _WorkerStartError(f"could not start a python worker process: {e}") from e
        worker = _Worker(proc)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await worker.read()
        except BaseException as e:
            self._retire(worker, kill=True)
            if isinstance(e, Exception):
                how = await worker.exit_status()
                raise _WorkerStartError(
                    f"the python worker did not start ({how}); run"
                    f" `{sys.executable} -m {WORKER_MODULE}` to see why"
                ) from e
            raise
        return worker

    def _retire(self, worker: _Worker, *, kill: bool) -> None:
        task = asyncio.get_running_loop().create_task(worker.stop(kill=kill))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def aclose(self) -> None:
        """Stop every worker (a run still in flight fails as cancelled)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for worker in idle:
            self._retire(worker, kill=False)
        for worker in list(self._busy):
            with contextlib.suppress(ProcessLookupError):
                worker.proc.kill()
        if self._busy:
            await self._drained.wait()
        while pending := [task for task in self._stopping if not task.done()]:
            await asyncio.gather(*pending, return_exceptions=True)
