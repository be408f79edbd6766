"""The demo's flaky test service: a small local HTTP service that misbehaves the same way
on every run, so the learners have something real to find.

Routes (the first path segment):

- ``/prices``: answers 503 with probability ``fail_rate``, drawn from the route's own
  seeded generator (the same request sequence always sees the same failures);
- ``/profile/<user>``: answers 401 on every attempt for the users whose token is revoked
  (``mallory``): a permanent error that no retry gets past;
- ``/render``: slow; it answers after the service time of the calling worker's pool,
  named by the ``X-Worker-Pool`` header that pool's workers send (see
  :mod:`noetl_agent.demo.stack`). Every pool of the demo runs in this one process, so the
  service stands in for the hardware a real pool would have.

It runs in a daemon thread on an ephemeral port of 127.0.0.1 (:func:`serve`, over
:func:`serve_json`, which serves any function that decides replies) and counts what it
answered, per route and status.
"""

from __future__ import annotations

import json
import random
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

POOL_HEADER = "X-Worker-Pool"
REVOKED = frozenset({"mallory"})


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How the service misbehaves (see the module docstring)."""

    fail_rate: float = 0.3  # /prices: share of requests answered 503
    revoked: frozenset[str] = REVOKED  # /profile/<user>: users answered 401
    pool_ms: Mapping[str, float] = field(
        default_factory=lambda: {"small": 200.0, "large": 25.0}
    )  # /render: service time by the calling pool
    default_ms: float = 200.0  # /render without a known pool
    seed: int = 7


class FlakyService:
    """Decides every answer of the demo service; :func:`serve` puts it on a port."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self._lock = threading.Lock()
        self._rng = random.Random(behaviour.seed ^ zlib.crc32(b"prices"))
        self.counts: Counter[tuple[str, int]] = Counter()

    def answer(self, path: str, pool: str | None) -> tuple[int, dict[str, object], float]:
        """(status, JSON body, seconds to wait before answering) of one request."""
        segments = [part for part in path.split("?")[0].split("/") if part]
        route = segments[0] if segments else ""
        delay = 0.0
        with self._lock:
            if route == "prices":
                failed = self._rng.random() < self.behaviour.fail_rate
                status = 503 if failed else 200
            elif route == "profile":
                user = segments[1] if len(segments) > 1 else ""
                status = 401 if user in self.behaviour.revoked else 200
            elif route == "render":
                status = 200
                delay = self.behaviour.pool_ms.get(pool or "", self.behaviour.default_ms) / 1000
            else:
                status = 404
            self.counts[(route, status)] += 1
        body: dict[str, object] = {"route": route, "status": status}
        if status == 200:
            body["ok"] = True
        else:
            body["error"] = {401: "token revoked", 404: "no such route"}.get(status, "unavailable")
        return status, body, delay

    def summary(self) -> dict[str, dict[str, int]]:
        """Requests answered per route and status."""
        with self._lock:
            result: dict[str, dict[str, int]] = {}
            for (route, status), count in sorted(self.counts.items()):
                result.setdefault(route, {})[str(status)] = count
            return result


Reply = tuple[int, Mapping[str, str], Mapping[str, object], float]
"""(status, extra headers, JSON body, seconds to wait before answering)."""
Answer = Callable[[str, str, str | None], Reply]
"""Decides the reply to (method, path with query, the calling pool or None)."""


@contextmanager
def serve_json(
    answer: Answer, *, name: str, methods: Sequence[str] = ("GET", "POST")
) -> Iterator[str]:
    """Serve ``answer`` over HTTP ``methods`` (others get 501) on a free port of 127.0.0.1,
    in a daemon thread called ``name``; yield the base URL; stop on exit. Quiet: the
    caller prints its own progress."""

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            status, headers, body, delay = answer(
                self.command, self.path, self.headers.get(POOL_HEADER)
            )
            if delay > 0:
                time.sleep(delay)
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the caller gave up first (its timeout): counted, nothing to send

        def log_message(self, format: str, *args: object) -> None:
            """Nothing on stderr: the caller reports for itself."""

    for method in methods:
        setattr(Handler, f"do_{method}", Handler._serve)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serve(service: FlakyService) -> AbstractContextManager[str]:
    """Serve ``service`` on a free port of 127.0.0.1 in a thread; yield its base URL."""

    def answer(method: str, path: str, pool: str | None) -> Reply:
        status, body, delay = service.answer(path, pool)
        return status, {}, body, delay

    return serve_json(answer, name="demo-service")


class PoolTransport(httpx.AsyncBaseTransport):
    """The HTTP transport of one pool's workers: it names the pool on every request, below
    the tool and after the step's own headers, so a playbook cannot set or fake it."""

    def __init__(self, pool: str) -> None:
        self.pool = pool
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers[POOL_HEADER] = self.pool
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
