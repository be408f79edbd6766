"""The local HTTP service the generation eval's live runs call, in a thread of its own.

``GET /items``, ``/orders``, ``/orders/{id}``, ``/regions/{region}``, ``/weather/{city}``,
``/users``, ``/a``, ``/b``, ``/health`` answer fixed JSON; ``GET /flaky`` answers 503 twice,
then 200; ``POST /hooks/...`` answers ``{"received": true}``. Every request is counted.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ITEMS = [
    {"name": "tea", "price": 2.0, "category": "drink"},
    {"name": "coffee", "price": 4.0, "category": "drink"},
    {"name": "pie", "price": 6.0, "category": "food"},
    {"name": "cake", "price": 8.0, "category": "food"},
]
ORDERS = [
    {"id": 1, "amount": 10.0, "region": "north"},
    {"id": 2, "amount": 20.0, "region": "south"},
    {"id": 3, "amount": 30.0, "region": "north"},
    {"id": 4, "amount": 40.0, "region": "south"},
    {"id": 5, "amount": 50.0, "region": "north"},
]
TEMPS = {"Paris": 25.0, "Oslo": 10.0, "Lima": 25.0}
USERS = [
    {"email": "a@example.com", "name": "Ann"},
    {"email": "b@example.com", "name": "Bo"},
    {"email": "a@example.com", "name": "Ann again"},
]


@dataclass
class LocalService:
    """The running service: its base URL and the requests it has answered."""

    url: str = ""
    requests: list[str] = field(default_factory=list)
    flaky_failures: int = 2


def _answer(service: LocalService, method: str, path: str) -> tuple[int, Any]:
    parts = [p for p in path.split("?")[0].split("/") if p]
    if method == "POST":
        return (200, {"received": True}) if parts[:1] == ["hooks"] else (404, {"error": path})
    fixed: dict[str, Any] = {
        "items": ITEMS,
        "orders": ORDERS,
        "users": USERS,
        "a": {"a": 1},
        "b": {"b": 2},
        "health": {"ok": True},
    }
    if len(parts) == 1 and parts[0] in fixed:
        return 200, fixed[parts[0]]
    if parts == ["flaky"]:
        if service.flaky_failures > 0:
            service.flaky_failures -= 1
            return 503, {"error": "busy, try again"}
        return 200, [{"n": 1}, {"n": 2}]
    if len(parts) == 2 and parts[0] == "orders" and parts[1].isdigit():
        return 200, {"id": int(parts[1]), "amount": 10.0 * int(parts[1])}
    if len(parts) == 2 and parts[0] == "regions":
        return 200, [order for order in ORDERS if order["region"] == parts[1]]
    if len(parts) == 2 and parts[0] == "weather" and parts[1] in TEMPS:
        return 200, {"city": parts[1], "temp": TEMPS[parts[1]]}
    return 404, {"error": f"no such path {path}"}


@contextmanager
def local_service() -> Iterator[LocalService]:
    """Serve on a free port of 127.0.0.1 until the block ends."""
    service = LocalService()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            service.requests.append(f"{self.command} {self.path}")
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            status, payload = _answer(service, self.command, self.path)
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _reply

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="eval-service", daemon=True)
    thread.start()
    service.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
