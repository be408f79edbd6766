"""The child side of the ``python`` tool: a long-lived process that runs step code.

``engine.tools.python`` starts this module with ``python -m engine.tools.pyworker`` and
talks to it over its stdin and stdout in frames: a 4-byte big-endian length, then that
many bytes of UTF-8 JSON. The worker first sends ``{"ready": true}``; then, for every
request ``{code, file, inputs, libs}``, it sends back exactly one reply::

    {"ok": true, "result": <JSON value>, "stdout": str, "stderr": str, "usage": {...}}
    {"ok": false, "error": {"code", "message", "traceback"}, "stdout": str, "stderr": str,
     "usage": {...}}

``usage`` is what the run cost this process: ``cpu_ms`` (user + system time of the
process and of subprocesses it reaped during the run) and ``peak_rss_kb`` (the resident
memory high-water mark; reset before each run on Linux, so it is the run's own peak there,
and the process's lifetime peak elsewhere).

The protocol runs over duplicates of the original descriptors. Descriptor 0 is then
pointed at ``/dev/null`` and descriptor 1 at descriptor 2, so neither ``input()`` nor a
write to the real stdout (from C code or a subprocess) can touch the protocol, and
``print`` inside step code is captured for the reply. End of input ends the worker.

Step code comes in one of three styles, all with the inputs bound as global names and the
whole input mapping as ``input_data``:

* it defines ``main`` (sync or async): ``main`` is called with the inputs its signature
  accepts, and its return value is the result;
* it assigns ``result`` at top level: that value is the result (this wins over ``main``);
* it has a top-level ``return``: the code is run as the body of a function whose
  parameters are the inputs, and the returned value (or ``result``, if the body assigned it
  and fell off its end) is the result.

Compiled code is cached by source text. Imports are kept to a minimum so that a new worker
is ready quickly; heavier modules load the first time a step needs them.
"""

from __future__ import annotations

import io
import json
import os
import resource
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from engine.tools.usage import process_cpu_seconds

if TYPE_CHECKING:
    import ast

OUTPUT_LIMIT = 8192
"""Characters of captured stdout/stderr kept per run (the last ones)."""

TRACEBACK_FRAMES = 10
"""Frames of the step's own code kept in a traceback (the innermost ones)."""

_CACHE_LIMIT = 512
_CO_VARKEYWORDS = 0x08
_CO_COROUTINE = 0x80
_PYCF_ALLOW_TOP_LEVEL_AWAIT = 0x2000
_WRAPPER = "__step__"
_MISSING: Any = object()


class _Compiled:
    """A piece of step code, compiled once and run many times."""

    __slots__ = ("code", "params", "sets_result", "wrapped")

    def __init__(self, code: Any, wrapped: bool, params: tuple[str, ...], sets_result: bool):
        self.code = code
        self.wrapped = wrapped
        self.params = params
        self.sets_result = sets_result


_modules: dict[tuple[str, str], _Compiled | None] = {}
"""Code compiled as a module by (source, filename); None for code that must be wrapped."""
_functions: dict[tuple[str, str, tuple[str, ...]], _Compiled] = {}
"""Code wrapped in a function, by (source, filename, parameter names)."""


def _binds_result(tree: ast.Module) -> bool:
    """Whether the code binds the name ``result`` in its own (top-level) scope."""
    import ast

    def binds(node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return node.id == "result" and isinstance(node.ctx, ast.Store | ast.Del)
        if isinstance(node, ast.alias):
            return (node.asname or node.name.partition(".")[0]) == "result"
        if isinstance(node, ast.Global):
            return "result" in node.names
        return False

    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if binds(node):
            return True
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            # A nested scope binds its own names; only a ``global result`` in it counts.
            stack.extend(n for n in ast.walk(node) if isinstance(n, ast.Global))
        else:
            stack.extend(ast.iter_child_nodes(node))
    return False


def _compile(source: str, filename: str, names: tuple[str, ...]) -> _Compiled:
    """Compile step code, as a module or, if it returns at top level, as a function body."""
    import ast

    tree = ast.parse(source, filename)
    sets_result = _binds_result(tree)
    try:
        code = compile(tree, filename, "exec", _PYCF_ALLOW_TOP_LEVEL_AWAIT)
        return _Compiled(code, False, (), sets_result)
    except SyntaxError as e:
        if e.msg != "'return' outside function":
            raise
    params = names if "input_data" in names else (*names, "input_data")
    body = list(tree.body)
    if sets_result:
        fallback = ast.parse("return locals().get('result')").body[0]
        last = body[-1] if body else None
        ast.fix_missing_locations(ast.copy_location(fallback, last) if last else fallback)
        body.append(fallback)
    arguments = ast.arguments(
        posonlyargs=[],
        args=[],
        vararg=None,
        kwonlyargs=[ast.arg(arg=name) for name in params],
        kw_defaults=[None for _ in params],
        kwarg=None,
        defaults=[],
    )
    for kind in (ast.FunctionDef, ast.AsyncFunctionDef):
        func = kind(name=_WRAPPER, args=arguments, body=body, decorator_list=[], returns=None)
        module = ast.Module(body=[func], type_ignores=[])
        ast.fix_missing_locations(ast.copy_location(func, body[0]))
        try:
            code = compile(module, filename, "exec")
        except SyntaxError as e:
            if kind is ast.FunctionDef and ("async" in e.msg or "await" in e.msg):
                continue
            raise
        return _Compiled(code, True, params, sets_result)
    raise AssertionError("unreachable")


def _compiled(source: str, filename: str, inputs: dict[str, Any]) -> _Compiled:
    entry = _modules.get((source, filename), _MISSING)
    if isinstance(entry, _Compiled):
        return entry
    names = tuple(k for k in inputs if k.isidentifier() and not _is_keyword(k))
    if entry is None and (wrapped := _functions.get((source, filename, names))):
        return wrapped
    if len(_modules) + len(_functions) >= _CACHE_LIMIT:
        _modules.clear()
        _functions.clear()
    import linecache

    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    compiled = _compile(source, filename, names)
    if compiled.wrapped:
        _modules[(source, filename)] = None
        _functions[(source, filename, names)] = compiled
    else:
        _modules[(source, filename)] = compiled
    return compiled


def _is_keyword(name: str) -> bool:
    import keyword

    return keyword.iskeyword(name)


def _await(awaitable: Any) -> Any:
    import asyncio

    async def wait() -> Any:
        return await awaitable

    return asyncio.run(wait())


def _call_main(main: Callable[..., Any], inputs: dict[str, Any]) -> Any:
    """Call ``main`` with the inputs its signature names, or all of them if it takes
    ``**kwargs``. A parameter named ``input_data`` that is not an input gets all inputs."""
    code = getattr(main, "__code__", None)
    if code is not None:
        if code.co_flags & _CO_VARKEYWORDS:
            return main(**inputs)
        first = code.co_posonlyargcount
        positional_only = code.co_varnames[:first]
        named = code.co_varnames[first : code.co_argcount + code.co_kwonlyargcount]
    else:
        import inspect

        params = inspect.signature(main).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return main(**inputs)
        positional_only = tuple(p.name for p in params if p.kind is p.POSITIONAL_ONLY)
        named = tuple(p.name for p in params if p.kind is not p.POSITIONAL_ONLY)
    available = inputs if "input_data" in inputs else {**inputs, "input_data": inputs}
    args = [available[n] for n in positional_only if n in available]
    return main(*args, **{n: available[n] for n in named if n in available})


def execute(source: str, filename: str, inputs: dict[str, Any], libs: dict[str, str]) -> Any:
    """Run step code and return its result; exceptions raised by the code propagate."""
    compiled = _compiled(source, filename, inputs)
    namespace: dict[str, Any] = {"__name__": "__step__", "__file__": filename}
    namespace["input_data"] = inputs
    namespace.update(inputs)
    if libs:
        import importlib

        for alias, module in libs.items():
            namespace[alias] = importlib.import_module(module)
    if compiled.wrapped:
        exec(compiled.code, namespace)
        result = namespace[_WRAPPER](**{n: namespace[n] for n in compiled.params})
    else:
        pending = eval(compiled.code, namespace)
        if pending is not None and compiled.code.co_flags & _CO_COROUTINE:
            _await(pending)  # top-level ``await`` makes the module body a coroutine
        if compiled.sets_result and "result" in namespace:
            return namespace["result"]
        main = namespace.get("main")
        if not callable(main):
            return None
        result = _call_main(main, inputs)
    if hasattr(result, "__await__"):
        result = _await(result)
    return result


def _convert(value: Any) -> Any:
    """JSON stand-in for a value ``json`` cannot encode."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            import base64

            return base64.b64encode(data).decode("ascii")
    if type(value).__name__ == "Decimal":
        return float(value)
    return str(value)


def _plain(value: Any, path: frozenset[int] = frozenset()) -> Any:
    """A copy of ``value`` made of JSON types only, for when encoding it directly fails
    (keys that are not strings, reference cycles)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if id(value) in path:
        return "<cycle>"
    inner = path | {id(value)}
    if isinstance(value, dict):
        return {_key(k): _plain(v, inner) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v, inner) for v in value]
    return _plain(_convert(value), inner)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    return (
        json.dumps(key)
        if isinstance(key, int | float | bool) or key is None
        else str(_convert(key))
    )


def _encode(reply: dict[str, Any]) -> bytes:
    try:
        return json.dumps(reply, default=_convert).encode()
    except (TypeError, ValueError):
        reply = {**reply, "result": _plain(reply.get("result"))}
        return json.dumps(reply, default=_convert).encode()


def _trim(text: str) -> str:
    if len(text) <= OUTPUT_LIMIT:
        return text
    dropped = len(text) - OUTPUT_LIMIT
    return f"[{dropped} earlier characters dropped]\n" + text[-OUTPUT_LIMIT:]


def _traceback(exc: BaseException, filename: str) -> str:
    """The traceback restricted to frames of the step's own code."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.format_list(frames[-TRACEBACK_FRAMES:])
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def _failure(exc: BaseException, filename: str) -> dict[str, Any]:
    name = type(exc).__name__
    if isinstance(exc, SystemExit):
        message = (
            f"SystemExit: the step called sys.exit({exc.code!r}); return a value to succeed"
            " or raise an exception to fail the step"
        )
    else:
        text = str(exc)
        message = f"{name}: {text}" if text else name
    return {"code": name, "message": message, "traceback": _traceback(exc, filename)}


_home = os.getcwd()


def _restore_cwd() -> None:
    """Undo an ``os.chdir`` of the step, so that the next step starts where this one did."""
    try:
        if os.getcwd() == _home:
            return
    except OSError:
        pass  # the directory the step moved to is gone
    os.chdir(_home)


class LoopResults(list[Any]):
    """A loop step's results: a list in item order that also answers the
    ``{"results": [...], "count": n}`` reads of playbooks written for upstream NoETL."""

    def get(self, key: Any, default: Any = None) -> Any:
        if key in ("results", "data"):
            return list(self)
        if key == "count":
            return len(self)
        return default

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            if key in ("results", "data"):
                return list(self)
            if key == "count":
                return len(self)
            raise KeyError(key)
        return super().__getitem__(key)


_PEAK_RESETTABLE = True
"""Whether ``/proc/self/clear_refs`` can reset the memory high-water mark (Linux ≥ 4.0)."""


def _reset_peak() -> None:
    global _PEAK_RESETTABLE
    if not _PEAK_RESETTABLE:
        return
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        _PEAK_RESETTABLE = False


def _peak_rss_kb() -> int:
    if _PEAK_RESETTABLE:
        try:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes there, KiB elsewhere


def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Run one request and return its reply; never raises for an error of the step code."""
    _reset_peak()
    cpu_before = process_cpu_seconds()
    filename = request.get("file") or "<python step>"
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    inputs = request.get("inputs") or {}
    for name in request.get("loop_results") or ():
        if isinstance(inputs.get(name), list):
            inputs[name] = LoopResults(inputs[name])
    try:
        result = execute(request["code"], filename, inputs, request.get("libs") or {})
        reply: dict[str, Any] = {"ok": True, "result": result}
    except BaseException as e:  # the step's failure, whatever it is, is the reply
        reply = {"ok": False, "error": _failure(e, filename)}
    finally:
        sys.stdout, sys.stderr = saved
        _restore_cwd()
    reply["stdout"] = _trim(out.getvalue())
    reply["stderr"] = _trim(err.getvalue())
    reply["usage"] = {
        "cpu_ms": round((process_cpu_seconds() - cpu_before) * 1000, 3),
        "peak_rss_kb": _peak_rss_kb(),
    }
    return reply


PARENT_CHECK_INTERVAL = 1.0
"""Seconds between checks that the process which started this worker is still there."""


def _watch_parent() -> None:
    """End this worker once its parent is gone.

    The parent kills a worker whose run overstays its timeout; if the parent itself died,
    nobody would, and a step stuck in a loop would spin forever.
    """
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_INTERVAL)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _read_frame(stream: BinaryIO) -> bytes | None:
    header = stream.read(4)
    if len(header) < 4:
        return None
    size = int.from_bytes(header, "big")
    body = stream.read(size)
    return body if len(body) == size else None


def _write_frame(stream: BinaryIO, body: bytes) -> None:
    stream.write(len(body).to_bytes(4, "big") + body)
    stream.flush()


def serve() -> None:
    """Serve requests from the original stdin until it closes."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    _watch_parent()
    _write_frame(replies, b'{"ready": true}')
    while (body := _read_frame(requests)) is not None:
        _write_frame(replies, _encode(handle(json.loads(body))))


if __name__ == "__main__":
    serve()
