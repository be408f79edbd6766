"""Local HTTP services for tests, each in a thread of its own (so they also serve a
`noetl-agent` subprocess while the test waits for it).

``flaky_service({"name": plan})`` serves ``GET``/``POST /<name>``: the n-th request to a
name (0-based, counted per name) is answered with the status ``plan(n)`` returns and a
JSON body ``{"n": n}``. Unknown names answer 404. It is served by the demo service's
``serve_json``. ``alternating_service()`` is one whose ``/data`` answers 503 to every
other request, the first included. ``serving(handler)`` runs any request handler class
the same way (for answers that are not JSON).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from noetl_agent.demo.service import Reply, serve_json

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

    def answer(method: str, path: str, pool: str | None) -> Reply:
        name = path.strip("/").split("?")[0]
        plan = plans.get(name)
        if plan is None:
            return 404, {}, {"error": "no such path"}, 0.0
        with lock:
            number = counts[name]
            counts[name] += 1
        return plan(number), {}, {"n": number}, 0.0

    with serve_json(answer, name="test-service") as url:
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
