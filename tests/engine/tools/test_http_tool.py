"""HttpTool against a real HTTP server on 127.0.0.1: results, error kinds, retryability, auth."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from engine.adapters.credentials import MemoryCredentialProvider
from engine.ports import ToolContext
from engine.tools.http import HttpTool

_REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests"}
_REASONS[503] = "Service Unavailable"


@dataclass
class Server:
    base: str
    hang: asyncio.Event
    handlers: set[asyncio.Task[None]] = field(default_factory=set)


def _response(status: int, body: bytes, content_type: str, extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n{extra}\r\n"
    )
    return head.encode() + body


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return method, target, headers, body


async def _route(
    server: Server, method: str, target: str, headers: dict[str, str], body: bytes
) -> bytes:
    path = target.split("?", 1)[0]
    if path == "/json":
        return _response(200, b'{"items": [1, 2], "ok": true}', "application/json")
    if path == "/text":
        return _response(200, b"plain words", "text/plain; charset=utf-8")
    if path == "/echo":
        echo = {"method": method, "target": target, "body": body.decode(), "headers": headers}
        return _response(200, json.dumps(echo).encode(), "application/json")
    if path == "/busy":
        return _response(429, b"slow down", "text/plain", "Retry-After: 2\r\n")
    if path == "/down":
        return _response(503, b'{"error": "maintenance"}', "application/json")
    if path == "/secret":
        if headers.get("authorization") != "Bearer s3cret-token":
            return _response(401, b"who are you", "text/plain")
        return _response(200, b'{"user": "alice"}', "application/json")
    if path == "/hang":
        await server.hang.wait()
    return _response(404, b"no such page", "text/plain")


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server(base="", hang=asyncio.Event())

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        state.handlers.add(task)
        try:
            request = await _read_request(reader)
            writer.write(await _route(state, *request))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            state.handlers.discard(task)

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    state.base = f"http://127.0.0.1:{port}"
    yield state
    state.hang.set()
    listener.close()
    await listener.wait_closed()
    if state.handlers:
        await asyncio.wait(state.handlers, timeout=2)


@pytest.fixture
async def tool() -> AsyncIterator[HttpTool]:
    executor = HttpTool()
    yield executor
    await executor.aclose()


def _ctx(credentials: MemoryCredentialProvider | None = None) -> ToolContext:
    return ToolContext(execution_id="e1", step="fetch", step_run_id="r1", credentials=credentials)


async def test_json_response(server: Server, tool: HttpTool) -> None:
    outcome = await tool.run({"url": f"{server.base}/json"}, {}, _ctx())
    assert outcome.status == "ok"
    assert outcome.http_status == 200
    assert outcome.data["status_code"] == 200
    assert outcome.data["json"] == {"items": [1, 2], "ok": True}
    assert "text" not in outcome.data
    assert outcome.data["headers"]["content-type"] == "application/json"
    assert outcome.to_output()["http"] == {"status": 200}


async def test_text_response(server: Server, tool: HttpTool) -> None:
    outcome = await tool.run({"url": f"{server.base}/text"}, {}, _ctx())
    assert outcome.status == "ok"
    assert outcome.data["text"] == "plain words"
    assert "json" not in outcome.data


async def test_method_params_headers_and_json_body(server: Server, tool: HttpTool) -> None:
    config = {
        "method": "post",
        "url": f"{server.base}/echo",
        "params": {"page": 2, "q": "rain"},
        "headers": {"X-Request-Id": "abc"},
        "json": {"city": "Austin"},
    }
    outcome = await tool.run(config, {}, _ctx())
    echo = outcome.data["json"]
    assert echo["method"] == "POST"
    assert echo["target"] == "/echo?page=2&q=rain"
    assert json.loads(echo["body"]) == {"city": "Austin"}
    assert echo["headers"]["x-request-id"] == "abc"
    assert echo["headers"]["content-type"] == "application/json"


async def test_string_body_is_sent_as_is(server: Server, tool: HttpTool) -> None:
    config = {"method": "PUT", "url": f"{server.base}/echo", "body": "a=1&b=2"}
    outcome = await tool.run(config, {}, _ctx())
    assert outcome.data["json"]["body"] == "a=1&b=2"


async def test_404_is_a_non_retryable_http_error(server: Server, tool: HttpTool) -> None:
    url = f"{server.base}/missing"
    outcome = await tool.run({"url": url}, {}, _ctx())
    assert outcome.status == "error"
    assert outcome.error is not None
    assert outcome.error.kind == "http"
    assert outcome.error.code == 404
    assert outcome.error.retryable is False
    assert outcome.error.message.startswith(f"GET {url} returned 404 Not Found")
    assert outcome.http_status == 404
    assert outcome.data == {
        "status_code": 404,
        "headers": outcome.data["headers"],
        "text": "no such page",
    }


async def test_503_is_retryable_and_keeps_the_body(server: Server, tool: HttpTool) -> None:
    outcome = await tool.run({"url": f"{server.base}/down"}, {}, _ctx())
    assert outcome.error is not None
    assert (outcome.error.kind, outcome.error.code, outcome.error.retryable) == ("http", 503, True)
    assert "503 Service Unavailable" in outcome.error.message
    assert outcome.data["json"] == {"error": "maintenance"}
    assert outcome.to_output()["error"]["retryable"] is True


async def test_429_is_retryable_with_retry_after(server: Server, tool: HttpTool) -> None:
    outcome = await tool.run({"url": f"{server.base}/busy"}, {}, _ctx())
    assert outcome.error is not None
    assert (outcome.error.kind, outcome.error.code, outcome.error.retryable) == ("http", 429, True)
    assert outcome.meta["retry_after"] == 2.0


async def test_connection_refused_is_a_retryable_connection_error(tool: HttpTool) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outcome = await tool.run({"url": f"http://127.0.0.1:{port}/x"}, {}, _ctx())
    assert outcome.error is not None
    assert outcome.error.kind == "connection"
    assert outcome.error.retryable is True
    assert f"127.0.0.1:{port}" in outcome.error.message


async def test_timeout_is_a_retryable_timeout_error(server: Server, tool: HttpTool) -> None:
    outcome = await tool.run({"url": f"{server.base}/hang", "timeout": 0.2}, {}, _ctx())
    assert outcome.error is not None
    assert outcome.error.kind == "timeout"
    assert outcome.error.retryable is True
    assert "0.2s" in outcome.error.message


async def test_bearer_auth_from_a_keychain_credential(server: Server, tool: HttpTool) -> None:
    credentials = MemoryCredentialProvider(
        {"api": {"kind": "bearer", "data": {"token": "s3cret-token"}}}
    )
    url = f"{server.base}/secret"
    outcome = await tool.run({"url": url, "auth": "api"}, {}, _ctx(credentials))
    assert outcome.status == "ok"
    assert outcome.data["json"] == {"user": "alice"}
    mapping_form = {"url": url, "auth": {"type": "bearer", "credential": "api"}}
    assert (await tool.run(mapping_form, {}, _ctx(credentials))).status == "ok"
    unauthenticated = await tool.run({"url": url}, {}, _ctx(credentials))
    assert unauthenticated.http_status == 401


async def test_unknown_credential_is_a_validation_error(tool: HttpTool) -> None:
    config = {"url": "http://127.0.0.1:9/", "auth": "nope"}
    outcome = await tool.run(config, {}, _ctx(MemoryCredentialProvider()))
    assert outcome.error is not None
    assert outcome.error.kind == "validation"
    assert "'nope' is not defined" in outcome.error.message


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({}, "`url`"),
        ({"url": "http://x", "method": "FETCH"}, "`method`"),
        ({"url": "http://x", "headers": ["a"]}, "`headers`"),
        ({"url": "http://x", "json": {}, "body": "x"}, "`json` and `body`"),
        ({"url": "http://x", "timeout": -1}, "timeout"),
        ({"url": "ftp://x/y"}, "`url`"),
    ],
)
async def test_invalid_config_is_a_validation_error(
    tool: HttpTool, config: dict[str, object], needle: str
) -> None:
    outcome = await tool.run(config, {}, _ctx())
    assert outcome.error is not None
    assert outcome.error.kind == "validation"
    assert needle in outcome.error.message
