"""Local HTTP services for tests, each in a thread of its own (so they also serve a
`noetl-agent` subprocess while the test waits for it).

``flaky_service({"name": plan})`` serves ``GET``/``POST /<name>``: the n-th request to a
name (0-based, counted per name) is answered with the status ``plan(n)`` returns and a
JSON body ``{"n": n}``. Unknown names answer 404. ``alternating_service()`` is one whose
``/data`` answers 503 to every other request, the first included. ``serving(handler)``
runs any request handler class the same way.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Plan = Callable[[int], int]


def every(period: int, failing: set[int], status: int = 503) -> Plan:
    """Requests whose number modulo ``period`` is in ``failing`` get ``status``, others 200."""
    return lambda n: status if n % period in failing else 200


def always(status: int) -> Plan:
    return lambda n: status


@contextmanager
def flaky_service(plans: Mapping[str, Plan]) -> Iterator[str]:
    """Serve ``plans`` on a free port of 127.0.0.1; yield the base URL; stop on exit."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            name = self.path.strip("/").split("?")[0]
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            plan = plans.get(name)
            if plan is None:
                self._send(404, {"error": "no such path"})
                return
            with lock:
                number = counts[name]
                counts[name] += 1
            self._send(plan(number), {"n": number})

        do_GET = _answer
        do_POST = _answer

        def _send(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: nothing on the test's stderr."""

    with serving(Handler) as url:
        yield url


@contextmanager
def alternating_service() -> Iterator[str]:
    """``/data`` answers 503 to the first request and every other one after it."""
    with flaky_service({"data": every(2, {0})}) as url:
        yield url


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free port of 127.0.0.1; yield the base URL; stop on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="test-service", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
