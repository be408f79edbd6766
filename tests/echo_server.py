"""A local HTTP server that echoes the credentials it is sent, in a thread of its own.

``GET /echo`` answers 200 with ``{"authorization": ..., "api_key": ...}`` (the request's
``Authorization`` and ``X-Api-Key`` headers); ``GET /deny`` answers 401 with a text body
quoting the ``Authorization`` header, the way some servers explain a refusal. Being a
thread, it also serves a `noetl-agent` subprocess while the test waits for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler

from tests.flaky_service import serving


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        authorization = self.headers.get("Authorization", "")
        if self.path.startswith("/echo"):
            body = json.dumps(
                {"authorization": authorization, "api_key": self.headers.get("X-Api-Key", "")}
            ).encode()
            self._send(200, body, "application/json")
        elif self.path.startswith("/deny"):
            self._send(401, f"refused: {authorization} is not valid here".encode(), "text/plain")
        else:
            self._send(404, b"no such path", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: nothing on the test's stderr."""


@contextmanager
def echo_server() -> Iterator[str]:
    """Serve on a free port of 127.0.0.1; yield the base URL; stop on exit."""
    with serving(_Echo) as url:
        yield url
