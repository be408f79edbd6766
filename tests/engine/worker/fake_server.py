"""A small stand-in for the API server's worker routes, served by uvicorn on 127.0.0.1.

It plays the contract a distributed worker relies on:

    POST /api/commands/{id}/claim      200 {command, attempt} | 409 held or done | 404 unknown
    POST /api/commands/{id}/heartbeat  200 {claim_expires_at} | 409 claim lost
    POST /api/events/batch             stores events once by id; a final tool.processed
                                       marks its command done; 422 for an empty batch;
                                       409 naming the `commands` of a claim taken away
    GET  /health

and lets a test script failures: answer 503 to the next N batches, refuse one execution's
events (404), take a claim away (``lost``: heartbeats and reports on it are refused), or
refuse the token (401 unknown, 403 without the role).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from engine.adapters.postgres.commands import global_command_id
from engine.core.commands import RunTool, command_id_of
from engine.core.events import Event

WORKER_TOKEN = "worker-secret"
VIEWER_TOKEN = "viewer-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _problem(status: int, detail: str, **members: Any) -> JSONResponse:
    slug = {401: "unauthorized", 403: "forbidden", 404: "not-found", 409: "conflict"}
    kind = f"/problems/{slug.get(status, 'rejected')}"
    return JSONResponse(
        {"type": kind, "status": status, "detail": detail, **members},
        status_code=status,
        media_type="application/problem+json",
    )


@dataclass
class FakeServer:
    commands: dict[str, dict[str, Any]] = field(default_factory=dict)
    holders: dict[str, str] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)
    claims: list[tuple[str, str]] = field(default_factory=list)
    heartbeats: list[tuple[str, str]] = field(default_factory=list)
    batches: list[list[dict[str, Any]]] = field(default_factory=list)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    unknown_executions: set[str] = field(default_factory=set)
    fail_next_batches: int = 0
    refused_batches: int = 0
    refused_reports: list[list[str]] = field(default_factory=list)
    port: int = 0
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, command: RunTool) -> str:
        """Make ``command`` claimable; returns its global id."""
        command_id = global_command_id(command)
        self.commands[command_id] = command.to_dict()
        return command_id

    def events_of(self, command_id: str) -> list[dict[str, Any]]:
        execution_id, _, local = command_id.partition(":")
        prefix = f"{execution_id}:{local}:"
        return [e for e in self.events.values() if e["event_id"].startswith(prefix)]

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def app(self) -> FastAPI:
        app = FastAPI()

        def refused(request: Request) -> JSONResponse | None:
            auth = request.headers.get("authorization", "")
            if auth == f"Bearer {VIEWER_TOKEN}":
                return _problem(403, "the principal needs the worker role to report events")
            if auth != f"Bearer {WORKER_TOKEN}":
                return _problem(401, "unknown or revoked token")
            return None

        @app.get("/health")
        async def health() -> dict[str, str]:
            return {"status": "ok"}

        @app.post("/api/commands/{command_id:path}/claim")
        async def claim(command_id: str, request: Request) -> Any:
            if (answer := refused(request)) is not None:
                return answer
            body = await request.json()
            worker = str(body["worker_id"])
            self.claims.append((command_id, worker))
            self._changed.set()
            if command_id not in self.commands:
                return _problem(404, f"no command {command_id}")
            if command_id in self.done:
                return _problem(409, f"command {command_id} is done")
            holder = self.holders.get(command_id)
            if holder is not None and holder != worker:
                return _problem(409, f"command {command_id} is claimed by {holder}")
            self.holders[command_id] = worker
            self.attempts[command_id] = self.attempts.get(command_id, 0) + 1
            return {"command": self.commands[command_id], "attempt": self.attempts[command_id]}

        @app.post("/api/commands/{command_id:path}/heartbeat")
        async def heartbeat(command_id: str, request: Request) -> Any:
            if (answer := refused(request)) is not None:
                return answer
            body = await request.json()
            self.heartbeats.append((command_id, str(body["worker_id"])))
            self._changed.set()
            if command_id in self.lost or self.holders.get(command_id) != body["worker_id"]:
                return _problem(409, f"the claim of {command_id} was lost")
            return {"claim_expires_at": "2100-01-01T00:00:00Z"}

        @app.post("/api/events/batch")
        async def batch(request: Request) -> Any:
            if (answer := refused(request)) is not None:
                return answer
            events = (await request.json())["events"]
            if not events:
                return JSONResponse({"detail": "events: at least 1 item"}, status_code=422)
            if self.fail_next_batches > 0:
                self.fail_next_batches -= 1
                self.refused_batches += 1
                self._changed.set()
                return JSONResponse({"detail": "store restarting"}, status_code=503)
            for event in events:
                if event["execution_id"] in self.unknown_executions:
                    return _problem(404, f"no execution {event['execution_id']}")
            taken = sorted({_command_of(event) for event in events} & self.lost)
            if taken:
                self.refused_reports.append(taken)
                self._changed.set()
                detail = f"the token holds no claim on {', '.join(taken)}"
                return _problem(409, detail, commands=taken)
            self.batches.append(events)
            for event in events:
                self.events.setdefault(event["event_id"], event)
                if event["event_type"] == "tool.processed" and not event["payload"].get("partial"):
                    self.done.add(_command_of(event))
            self._changed.set()
            return {"accepted": len(events)}

        return app

    async def start(self, port: int | None = None) -> None:
        self.port = port or self.port or free_port()
        config = uvicorn.Config(
            self.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve())
        async with asyncio.timeout(10):
            while not self._server.started:
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None


def _command_of(event: dict[str, Any]) -> str:
    """The global id of the command a reported event (as JSON) is about."""
    return command_id_of(Event.from_dict(event)) or ""


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers, so tests may send themselves SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
