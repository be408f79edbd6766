"""A local HTTP service that answers 503 to every other request, in a thread of its own
(so it also serves a `noetl-agent` subprocess while the test waits for it)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Alternating(BaseHTTPRequestHandler):
    """503 on odd requests, 200 with ``{"call": n}`` on even ones (counted per server)."""

    calls = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            type(self).calls += 1
            call = type(self).calls
        if call % 2:
            status, body, content_type = 503, b"busy, try again", "text/plain"
        else:
            status, body, content_type = 200, f'{{"call": {call}}}'.encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: nothing on the test's stderr."""


@contextmanager
def alternating_service() -> Iterator[str]:
    """Serve on a free port of 127.0.0.1; yield the base URL; stop on exit."""
    handler = type("Alternating", (_Alternating,), {"calls": 0, "lock": threading.Lock()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="flaky-service", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
