"""The ``shell`` tool: run commands with ``/bin/sh -c``, in order, stopping at the first failure.

```yaml
tool:
  kind: shell
  cmds: ["mkdir -p out", "wc -l data.csv > out/lines"]   # or `command: "..."`
  env: {LANG: C}          # merged over the worker's environment
  cwd: scripts            # relative to the playbook's directory
  timeout: 30             # seconds; the smaller of this and the step timeout applies
```

The result is ``{stdout, stderr, exit_code}``: the text both streams produced over all
commands run (each capped to its last 64 KB) and the exit code of the last command run.
A non-zero exit is a ``validation`` error whose ``code`` is the exit code and whose
``data`` still carries the output. Each command runs in its own process group, so a
timeout or a cancellation kills everything the command started, not only the shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Mapping
from typing import Any

from engine.ports import ToolContext
from engine.tools.config import ConfigInvalid, effective_timeout
from engine.tools.outcome import ToolOutcome

SHELL = "/bin/sh"
OUTPUT_CAP = 64 * 1024
_READ_CHUNK = 64 * 1024
# Background children may keep the pipes open after the command exits; their output is
# read for this long, then the step moves on instead of waiting for them.
_PIPE_GRACE = 0.5


def _commands(config: Mapping[str, Any]) -> list[str]:
    cmds = config.get("cmds")
    command = config.get("command")
    if cmds is not None and command is not None:
        raise ConfigInvalid("give either `cmds` (a list) or `command` (a string), not both")
    if cmds is None and command is None:
        raise ConfigInvalid("missing `cmds`: give a list of shell commands to run in order")
    if command is not None:
        if isinstance(command, str):
            cmds = [command]
        elif isinstance(command, list):
            cmds = command
        else:
            raise ConfigInvalid(f"`command` must be a string, got {type(command).__name__}")
    if not isinstance(cmds, list):
        raise ConfigInvalid(
            f"`cmds` must be a list of strings, got {type(cmds).__name__}; "
            'write `cmds: ["first", "second"]` or use `command: "..."`'
        )
    if not cmds:
        raise ConfigInvalid("`cmds` is empty: give at least one command")
    for index, cmd in enumerate(cmds):
        if not isinstance(cmd, str) or not cmd.strip():
            raise ConfigInvalid(f"`cmds[{index}]` must be a non-empty string, got {cmd!r}")
    return cmds


def _env_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value)


def _environment(config: Mapping[str, Any]) -> dict[str, str] | None:
    env = config.get("env")
    if not env:
        return None  # inherit the worker's environment without copying it
    if not isinstance(env, Mapping):
        raise ConfigInvalid(f"`env` must be a mapping of names to values, got {type(env).__name__}")
    merged = dict(os.environ)
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key:
            raise ConfigInvalid(f"`env` has an invalid variable name {key!r}")
        merged[key] = _env_value(value)
    return merged


def _working_dir(config: Mapping[str, Any], ctx: ToolContext) -> str | None:
    cwd = config.get("cwd")
    if cwd is None:
        return None
    if not isinstance(cwd, str) or not cwd:
        raise ConfigInvalid(f"`cwd` must be a directory path, got {cwd!r}")
    path = os.path.expanduser(cwd)
    if not os.path.isabs(path) and ctx.base_dir:
        path = os.path.join(ctx.base_dir, path)
    if not os.path.isdir(path):
        raise ConfigInvalid(f"`cwd` {path!r} is not an existing directory; create it or fix `cwd`")
    return path


class _Tail:
    """The last ``OUTPUT_CAP`` bytes written to a stream, over several commands."""

    __slots__ = ("buffer", "truncated")

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        self.buffer += chunk
        if len(self.buffer) > 2 * OUTPUT_CAP:
            del self.buffer[:-OUTPUT_CAP]
            self.truncated = True

    def text(self) -> str:
        if len(self.buffer) > OUTPUT_CAP:
            del self.buffer[:-OUTPUT_CAP]
            self.truncated = True
        return self.buffer.decode("utf-8", errors="replace")


async def _drain(stream: asyncio.StreamReader | None, tail: _Tail) -> None:
    if stream is None:
        return
    while chunk := await stream.read(_READ_CHUNK):
        tail.add(chunk)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError:  # the group is gone and its id reused; kill the shell alone
        if proc.returncode is None:
            proc.kill()


async def _finish_readers(readers: list[asyncio.Task[None]], grace: float) -> None:
    _, pending = await asyncio.wait(readers, timeout=grace)
    for task in pending:
        task.cancel()
    for task in readers:
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise


def _short(cmd: str, limit: int = 120) -> str:
    one_line = " ".join(cmd.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 3] + "..."


def _last_lines(text: str, limit: int = 500) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


class ShellTool:
    """Runs ``cmds`` with ``/bin/sh -c``; see the module docstring for fields and result."""

    kind = "shell"

    async def run(
        self, config: Mapping[str, Any], inputs: Mapping[str, Any], ctx: ToolContext
    ) -> ToolOutcome:
        """Run every command in order; return ``ok`` or the first failure as a ``fail``."""
        try:
            cmds = _commands(config)
            env = _environment(config)
            cwd = _working_dir(config, ctx)
            timeout = effective_timeout(config, ctx)
        except ConfigInvalid as e:
            return ToolOutcome.fail("validation", f"shell tool: {e}")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        out, err = _Tail(), _Tail()
        exit_code = 0
        for index, cmd in enumerate(cmds):
            try:
                exit_code = await self._run_one(cmd, env, cwd, out, err, deadline)
            except TimeoutError:
                data: dict[str, Any] = {
                    "stdout": out.text(),
                    "stderr": err.text(),
                    "exit_code": None,
                }
                return ToolOutcome.fail(
                    "timeout",
                    f"shell command {index + 1} of {len(cmds)} `{_short(cmd)}` timed out "
                    f"after {timeout:g}s and its process group was killed; raise the "
                    "`timeout` or make the command finish sooner",
                    retryable=True,
                    data=data,
                )
            except OSError as e:
                return ToolOutcome.fail(
                    "validation",
                    f"shell tool: cannot start {SHELL} for `{_short(cmd)}`: {e.strerror or e}",
                    data={"stdout": out.text(), "stderr": err.text(), "exit_code": None},
                )
            if exit_code != 0:
                stderr = err.text()
                data = {"stdout": out.text(), "stderr": stderr, "exit_code": exit_code}
                how = (
                    f"was killed by signal {-exit_code}"
                    if exit_code < 0
                    else f"exited with code {exit_code}"
                )
                stderr_tail = _last_lines(stderr) or "(stderr is empty)"
                return ToolOutcome.fail(
                    "validation",
                    f"shell command {index + 1} of {len(cmds)} `{_short(cmd)}` {how}; "
                    f"stderr: {stderr_tail}",
                    code=exit_code,
                    data=data,
                )
        return ToolOutcome.ok({"stdout": out.text(), "stderr": err.text(), "exit_code": exit_code})

    async def _run_one(
        self,
        cmd: str,
        env: dict[str, str] | None,
        cwd: str | None,
        out: _Tail,
        err: _Tail,
        deadline: float | None,
    ) -> int:
        proc = await asyncio.create_subprocess_exec(
            SHELL,
            "-c",
            cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        readers = [
            asyncio.ensure_future(_drain(proc.stdout, out)),
            asyncio.ensure_future(_drain(proc.stderr, err)),
        ]
        try:
            async with asyncio.timeout_at(deadline):
                code = await proc.wait()
        except BaseException:
            # Timeout or cancellation: the command and everything it started go.
            _kill_group(proc)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), _PIPE_GRACE)
            finally:
                await _finish_readers(readers, _PIPE_GRACE)
            raise
        await _finish_readers(readers, _PIPE_GRACE)
        return code

    async def aclose(self) -> None:
        """Nothing to release: every process is waited for within its own run."""
