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
Background children a command leaves behind keep running after it exits; what they
write in the next half second is kept, and the step does not wait for them any longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
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


class _Pipe:
    """The read end of a pipe a command writes to, read from the event loop into a tail.

    Once detached (``tail`` is ``None``) it keeps reading and drops what it reads, so a
    background child still holding the pipe never blocks on a full pipe; it is closed
    at end of file.
    """

    __slots__ = ("fd", "loop", "on_eof", "tail")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        tail: _Tail,
        on_eof: Callable[[], None],
    ) -> None:
        self.loop = loop
        self.fd = fd
        self.tail: _Tail | None = tail
        self.on_eof = on_eof
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._read)

    def _read(self) -> None:
        try:
            chunk = os.read(self.fd, _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if chunk:
            if self.tail is not None:
                self.tail.add(chunk)
            return
        self.close()
        self.on_eof()

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1


class _Child:
    """A started command, watched from the event loop.

    Its exit is seen through a pidfd where the platform has them (Linux), so neither a
    thread nor a child watcher is involved; elsewhere a thread waits for it. Its stdout
    and stderr are read by two ``_Pipe`` readers.
    """

    __slots__ = ("loop", "open_pipes", "pidfd", "pipes", "proc", "waiter")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        proc: subprocess.Popen[bytes],
        fds: tuple[int, int],
        out: _Tail,
        err: _Tail,
    ) -> None:
        self.loop = loop
        self.proc = proc
        self.waiter: asyncio.Future[None] | None = None
        self.open_pipes = 2
        self.pidfd = -1
        self.pipes = (
            _Pipe(loop, fds[0], out, self._pipe_closed),
            _Pipe(loop, fds[1], err, self._pipe_closed),
        )
        try:
            self.pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):  # no pidfds here, or no fd left for one
            threading.Thread(target=self._wait_in_thread, name="shell-wait", daemon=True).start()
        else:
            loop.add_reader(self.pidfd, self._pidfd_ready)

    @classmethod
    def start(
        cls, cmd: str, env: dict[str, str] | None, cwd: str | None, out: _Tail, err: _Tail
    ) -> _Child:
        """Start ``cmd`` in a new session (so in its own process group); raises ``OSError``."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            proc = subprocess.Popen(
                [SHELL, "-c", cmd],
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        return cls(asyncio.get_running_loop(), proc, (out_r, err_r), out, err)

    def _exited(self) -> bool:
        return self.proc.returncode is not None

    def _drained(self) -> bool:
        return self.open_pipes == 0

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _pipe_closed(self) -> None:
        self.open_pipes -= 1
        if self.open_pipes == 0:
            self._wake()

    def _pidfd_ready(self) -> None:
        if self.proc.poll() is None:
            return
        self.loop.remove_reader(self.pidfd)
        os.close(self.pidfd)
        self.pidfd = -1
        self._wake()

    def _wait_in_thread(self) -> None:
        self.proc.wait()
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self.loop.call_soon_threadsafe(self._wake)

    async def _until(self, done: Callable[[], bool]) -> None:
        while not done():
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    async def exit_code(self) -> int:
        """Wait for the shell to exit; its code, or minus the signal that killed it."""
        await self._until(self._exited)
        return self.proc.returncode

    async def settle(self, exit_grace: float | None, pipe_grace: float) -> None:
        """Wait up to ``exit_grace`` for the exit (``None``: it happened), then up to
        ``pipe_grace`` for the pipes to close; stop collecting output either way."""
        try:
            if exit_grace is not None and not self._exited():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(exit_grace):
                        await self._until(self._exited)
            if not self._drained():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pipe_grace):
                        await self._until(self._drained)
        finally:
            for pipe in self.pipes:
                pipe.tail = None

    def kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except PermissionError:  # the group is gone and its id reused; kill the shell alone
            if self.proc.returncode is None:
                self.proc.kill()


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
        child = _Child.start(cmd, env, cwd, out, err)
        try:
            if deadline is None:
                code = await child.exit_code()
            else:
                async with asyncio.timeout_at(deadline):
                    code = await child.exit_code()
            await child.settle(None, _PIPE_GRACE)
        except BaseException:
            # Timeout or cancellation: the command and everything it started go.
            child.kill_group()
            await child.settle(_PIPE_GRACE, _PIPE_GRACE)
            raise
        return code

    async def aclose(self) -> None:
        """Nothing to release: every process is waited for within its own run."""
