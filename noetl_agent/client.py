"""A typed client of the HTTP API, in a sync and an async flavour over httpx.

    async with AsyncClient("http://127.0.0.1:8080", token) as api:
        entry = await api.register(yaml_text)
        started = await api.execute(entry.path, workload={"n": 3})
        outcome = await api.wait(started.execution_id)   # finished or paused

    with Client("http://127.0.0.1:8080", token) as api:
        api.approvals()

Both clients have the same methods (``close``/``aclose`` and ``wait`` included). Errors
come back as the classes the embedded engine raises, rebuilt from the server's problem
documents, so calling code does not care which side of the wire the engine is on:

    NotFound, Conflict, StoreError, PlaybookInvalid (with its issues)   engine.errors
    Forbidden, Unauthorized                                             noetl_agent.errors
    ApiError (any other refusal; ``status`` and ``problem`` attached)
    └── ServerUnavailable (no answer: not running, wrong address, timed out)

This module imports httpx and nothing of the server, so a command line that talks to a
server starts quickly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from types import TracebackType
from typing import Any, Generic, Self, TypeVar
from urllib.parse import quote

import httpx

from engine.core.events import Event
from engine.errors import Conflict, Issue, NoetlError, NotFound, PlaybookInvalid, StoreError
from engine.runtime.embedded import ExecutionOutcome
from noetl_agent.errors import ApiError, Forbidden, ServerUnavailable, Unauthorized
from noetl_agent.executions import PendingApproval

T = TypeVar("T")
DEFAULT_TIMEOUT = 30.0  # seconds for one request
SEARCH_TIMEOUT = 120.0  # seconds: the server may load the embedding model first
GENERATE_TIMEOUT = 600.0  # seconds: model calls and their repair rounds, then a dry run
LONG_POLL = 10.0  # seconds the server may hold an event read while following an execution
PROBLEM_PREFIX = "/problems/"  # as noetl_agent.api.problems writes ``type``
_ERRORS: dict[str, type[NoetlError]] = {
    "not-found": NotFound,
    "conflict": Conflict,
    "forbidden": Forbidden,
    "unauthorized": Unauthorized,
    "store-unavailable": StoreError,
}
_BY_STATUS: dict[int, type[NoetlError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
}
EventListener = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class Registered:
    """A registered catalog version."""

    path: str
    version: int
    name: str


@dataclass(frozen=True, slots=True)
class Started:
    """An execution the server has accepted."""

    execution_id: str
    status: str


@dataclass(frozen=True, slots=True)
class Execution:
    """An execution as ``GET /api/executions/{id}`` shows it."""

    execution_id: str
    playbook_path: str
    playbook_version: int | None
    status: str
    started_at: str
    finished_at: str | None = None
    parent_execution_id: str | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    events: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def settled(self) -> bool:
        """Finished or paused for a person."""
        return self.status != "running"

    def outcome(self) -> ExecutionOutcome:
        """The same outcome the embedded engine's ``wait`` returns."""
        return ExecutionOutcome(self.execution_id, self.status, self.result, self.error)


@dataclass(frozen=True, slots=True)
class Decision:
    """A recorded approval decision and the execution's status right after it."""

    approval_id: str
    approved: bool
    decided_by: str
    execution_id: str
    status: str


@dataclass(frozen=True, slots=True)
class _Call(Generic[T]):
    """One API call: the request to make and how to read a successful answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    body: Any = None
    params: dict[str, Any] | None = None
    timeout: float | None = None


def _build(cls: type[T]) -> Callable[[Any], T]:
    """Read a JSON object into dataclass ``cls``, ignoring members it does not know (a
    newer server may add some)."""
    names = {item.name for item in fields(cls)}  # type: ignore[arg-type]

    def build(data: Any) -> T:
        return cls(**{key: value for key, value in data.items() if key in names})

    return build


def _events(data: Any) -> list[Event]:
    return [Event.from_dict(item) for item in data]


def _ignore(data: Any) -> None:
    return None


class _Calls:
    """The calls both clients make, built once."""

    @staticmethod
    def register(content: str) -> _Call[Registered]:
        return _Call("POST", "/api/catalog/register", _build(Registered), {"content": content})

    @staticmethod
    def list_playbooks() -> _Call[list[dict[str, Any]]]:
        return _Call("GET", "/api/catalog", list)

    @staticmethod
    def get_playbook(path: str, version: int | None) -> _Call[dict[str, Any]]:
        params = {"version": version} if version is not None else None
        return _Call("GET", f"/api/catalog/{quote(path, safe='/')}", dict, params=params)

    @staticmethod
    def execute(path: str, version: int | None, workload: dict[str, Any] | None) -> _Call[Started]:
        body = {"path": path, "version": version, "workload": workload or {}}
        return _Call("POST", "/api/execute", _build(Started), body)

    @staticmethod
    def get_execution(execution_id: str) -> _Call[Execution]:
        return _Call("GET", f"/api/executions/{_segment(execution_id)}", _build(Execution))

    @staticmethod
    def list_executions(status: str | None, limit: int) -> _Call[list[dict[str, Any]]]:
        params: dict[str, Any] = {"limit": limit} | ({"status": status} if status else {})
        return _Call("GET", "/api/executions", list, params=params)

    @staticmethod
    def events(execution_id: str, after_seq: int, wait: float) -> _Call[list[Event]]:
        path = f"/api/executions/{_segment(execution_id)}/events"
        params = {"after_seq": after_seq, "wait": wait}
        return _Call("GET", path, _events, params=params, timeout=wait + DEFAULT_TIMEOUT)

    @staticmethod
    def cancel(execution_id: str, reason: str) -> _Call[Started]:
        path = f"/api/executions/{_segment(execution_id)}/cancel"
        return _Call("POST", path, _build(Started), {"reason": reason})

    @staticmethod
    def report(events: Sequence[Event]) -> _Call[None]:
        body = {"events": [event.to_dict() for event in events]}
        return _Call("POST", "/api/events/batch", _ignore, body)

    @staticmethod
    def approvals() -> _Call[list[PendingApproval]]:
        return _Call(
            "GET", "/api/approvals", lambda d: [_build(PendingApproval)(item) for item in d]
        )

    @staticmethod
    def decide(approval_id: str, approved: bool, comment: str | None) -> _Call[Decision]:
        path = f"/api/approvals/{quote(approval_id, safe='/')}/decision"
        body = {"approved": approved, "comment": comment}
        return _Call("POST", path, _build(Decision), body)

    @staticmethod
    def set_credential(name: str, kind: str, data: dict[str, Any]) -> _Call[dict[str, Any]]:
        body = {"name": name, "kind": kind, "data": data}
        return _Call("POST", "/api/credentials", dict, body)

    @staticmethod
    def list_credentials() -> _Call[list[dict[str, Any]]]:
        return _Call("GET", "/api/credentials", list)

    @staticmethod
    def delete_credential(name: str) -> _Call[None]:
        return _Call("DELETE", f"/api/credentials/{_segment(name)}", _ignore)

    @staticmethod
    def search(
        text: str, kind: str | None, filters: dict[str, Any] | None, k: int
    ) -> _Call[list[dict[str, Any]]]:
        body = {"text": text, "kind": kind, "filters": filters or {}, "k": k}
        return _Call("POST", "/api/search", list, body, timeout=SEARCH_TIMEOUT)

    @staticmethod
    def similar(execution_id: str, k: int) -> _Call[dict[str, Any]]:
        path = f"/api/executions/{_segment(execution_id)}/similar"
        return _Call("GET", path, dict, params={"k": k}, timeout=SEARCH_TIMEOUT)

    @staticmethod
    def error_clusters(params: dict[str, Any]) -> _Call[list[dict[str, Any]]]:
        query = {key: value for key, value in params.items() if value is not None}
        return _Call("GET", "/api/failures/clusters", list, params=query, timeout=SEARCH_TIMEOUT)

    @staticmethod
    def duration_anomalies(params: dict[str, Any]) -> _Call[list[dict[str, Any]]]:
        query = {key: value for key, value in params.items() if value is not None}
        return _Call("GET", "/api/steps/anomalies", list, params=query, timeout=SEARCH_TIMEOUT)

    @staticmethod
    def index() -> _Call[dict[str, Any]]:
        return _Call("POST", "/api/index", dict, timeout=SEARCH_TIMEOUT)

    @staticmethod
    def generate(
        description: str, constraints: dict[str, Any] | None, register: bool
    ) -> _Call[dict[str, Any]]:
        body = {"description": description, "constraints": constraints or {}, "register": register}
        return _Call("POST", "/api/generate", dict, body, timeout=GENERATE_TIMEOUT)

    @staticmethod
    def promote(
        path: str | None, version: int | None, content: str | None, comment: str | None
    ) -> _Call[dict[str, Any]]:
        body = {"path": path, "version": version, "content": content, "comment": comment}
        return _Call("POST", "/api/generate/promote", dict, body)

    @staticmethod
    def step_statistics(playbook: str, step: str | None) -> _Call[dict[str, Any]]:
        params = {"playbook": playbook} | ({"step": step} if step else {})
        return _Call("GET", "/api/stats/steps", dict, params=params, timeout=SEARCH_TIMEOUT)

    @staticmethod
    def analytics_query(sql: str, max_rows: int, timeout: float) -> _Call[dict[str, Any]]:
        body = {"sql": sql, "max_rows": max_rows, "timeout": timeout}
        return _Call("POST", "/api/analytics/query", dict, body, timeout=SEARCH_TIMEOUT)

    @staticmethod
    def export_analytics(full: bool) -> _Call[dict[str, Any]]:
        body = {"full": full}
        return _Call("POST", "/api/analytics/export", dict, body, timeout=SEARCH_TIMEOUT)

    @staticmethod
    def explain(execution_id: str) -> _Call[dict[str, Any]]:
        path = f"/api/executions/{_segment(execution_id)}/explain"
        return _Call("POST", path, dict, timeout=SEARCH_TIMEOUT)

    @staticmethod
    def feedback(
        execution_id: str, helpful: bool, comment: str | None, cause: str | None
    ) -> _Call[dict[str, Any]]:
        path = f"/api/executions/{_segment(execution_id)}/feedback"
        body = {"helpful": helpful, "comment": comment, "cause": cause}
        return _Call("POST", path, dict, body, timeout=SEARCH_TIMEOUT)

    @staticmethod
    def suggest_proposals(playbook: str | None) -> _Call[dict[str, Any]]:
        body = {"playbook": playbook} if playbook else None
        return _Call("POST", "/api/proposals/suggest", dict, body, timeout=SEARCH_TIMEOUT)

    @staticmethod
    def proposals(status: str | None) -> _Call[list[dict[str, Any]]]:
        params = {"status": status} if status else None
        return _Call("GET", "/api/proposals", list, params=params)

    @staticmethod
    def proposal(proposal_id: str) -> _Call[dict[str, Any]]:
        return _Call("GET", f"/api/proposals/{_segment(proposal_id)}", dict)

    @staticmethod
    def decide_proposal(
        proposal_id: str, approved: bool, comment: str | None
    ) -> _Call[dict[str, Any]]:
        path = f"/api/proposals/{_segment(proposal_id)}/decision"
        return _Call("POST", path, dict, {"approved": approved, "comment": comment})

    @staticmethod
    def submit_proposal(body: dict[str, Any]) -> _Call[dict[str, Any]]:
        return _Call("POST", "/api/proposals", dict, body)


def _segment(value: str) -> str:
    return quote(value, safe="")


def error_from(response: httpx.Response) -> NoetlError:
    """The exception a failed response stands for, rebuilt from its problem document."""
    try:
        document = response.json()
    except ValueError:
        document = None
    problem: dict[str, Any] = document if isinstance(document, dict) else {}
    detail = str(problem.get("detail") or response.text[:500] or response.reason_phrase)
    slug = str(problem.get("type") or "").removeprefix(PROBLEM_PREFIX)
    if slug == "playbook-invalid":
        issues = [
            Issue(
                path=str(item.get("path") or ""),
                message=str(item.get("message") or ""),
                line=item.get("line"),
                hint=item.get("hint"),
            )
            for item in problem.get("issues") or []
            if isinstance(item, dict)
        ]
        return PlaybookInvalid(issues)
    cls = _ERRORS.get(slug) or _BY_STATUS.get(response.status_code)
    if cls is not None:
        return cls(detail)
    return ApiError(
        f"the server answered {response.status_code}: {detail}",
        status=response.status_code,
        problem=problem,
    )


def _unreachable(request: httpx.Request, exc: httpx.TransportError) -> ServerUnavailable:
    base = f"{request.url.scheme}://{request.url.netloc.decode()}"
    return ServerUnavailable(
        f"no answer from the API server at {base} ({type(exc).__name__}: {exc}); "
        "start it with `noetl-agent server` or check --server / NOETL_SERVER_URL"
    )


def _result(call: _Call[T], response: httpx.Response) -> T:
    if response.is_error:
        raise error_from(response)
    return call.parse(response.json() if response.content else None)


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


class _Follow:
    """The state of following an execution's events until it settles."""

    def __init__(self, execution_id: str, after: int, on_event: EventListener | None) -> None:
        self.execution_id = execution_id
        self.after = after
        self.on_event = on_event

    def seen(self, events: Iterable[Event]) -> None:
        for event in events:
            self.after = max(self.after, event.seq or 0)
            if self.on_event is not None:
                self.on_event(event)


class AsyncClient:
    """The API over ``httpx.AsyncClient``; use ``async with`` or call :meth:`aclose`."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        """``http`` replaces the underlying client (its base URL and transport are used)."""
        self._token = token
        self._http = http or httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _Call[T]) -> T:
        request = self._http.build_request(
            call.method,
            call.path,
            json=call.body,
            params=call.params,
            headers=_headers(self._token),
            timeout=call.timeout if call.timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        try:
            response = await self._http.send(request)
        except httpx.TransportError as exc:
            raise _unreachable(request, exc) from exc
        return _result(call, response)

    async def register(self, content: str) -> Registered:
        """Register playbook YAML; raise ``PlaybookInvalid`` with its issues."""
        return await self._send(_Calls.register(content))

    async def set_credential(self, name: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """Store a credential on the server, encrypted (admin); answers name, kind, fields."""
        return await self._send(_Calls.set_credential(name, kind, data))

    async def list_credentials(self) -> list[dict[str, Any]]:
        """The server's credentials by name and kind (admin; values never leave)."""
        return await self._send(_Calls.list_credentials())

    async def delete_credential(self, name: str) -> None:
        """Delete a credential on the server (admin); ``NotFound`` when it is not stored."""
        await self._send(_Calls.delete_credential(name))

    async def list_playbooks(self) -> list[dict[str, Any]]:
        """The latest version of every playbook: path, version, name, description."""
        return await self._send(_Calls.list_playbooks())

    async def get_playbook(self, path: str, version: int | None = None) -> dict[str, Any]:
        """One catalog version with its YAML ``content``."""
        return await self._send(_Calls.get_playbook(path, version))

    async def execute(
        self, path: str, *, version: int | None = None, workload: dict[str, Any] | None = None
    ) -> Started:
        """Start an execution of a catalog playbook."""
        return await self._send(_Calls.execute(path, version, workload))

    async def get_execution(self, execution_id: str) -> Execution:
        return await self._send(_Calls.get_execution(execution_id))

    async def list_executions(
        self, *, status: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        return await self._send(_Calls.list_executions(status, limit))

    async def events(
        self, execution_id: str, *, after_seq: int = 0, wait: float = 0
    ) -> list[Event]:
        """Events with ``seq > after_seq``; with ``wait``, hold an empty answer that long."""
        return await self._send(_Calls.events(execution_id, after_seq, wait))

    async def cancel(self, execution_id: str, reason: str = "cancelled by request") -> Started:
        return await self._send(_Calls.cancel(execution_id, reason))

    async def report(self, events: Sequence[Event]) -> None:
        """Post worker events (needs the worker role)."""
        await self._send(_Calls.report(events))

    async def approvals(self) -> list[PendingApproval]:
        return await self._send(_Calls.approvals())

    async def decide(
        self, approval_id: str, *, approved: bool, comment: str | None = None
    ) -> Decision:
        """Approve or reject; ``Forbidden`` unless the token is a human approver's."""
        return await self._send(_Calls.decide(approval_id, approved, comment))

    async def search(
        self,
        text: str,
        *,
        kind: str | None = None,
        filters: dict[str, Any] | None = None,
        k: int = 10,
    ) -> list[dict[str, Any]]:
        """Search execution history by meaning; hits best first (viewer)."""
        return await self._send(_Calls.search(text, kind, filters, k))

    async def step_statistics(self, playbook: str, step: str | None = None) -> dict[str, Any]:
        """Statistics of one step, or of every step with finished runs (viewer)."""
        return await self._send(_Calls.step_statistics(playbook, step))

    async def analytics_query(
        self, sql: str, *, max_rows: int = 1000, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Read-only ClickHouse SQL over the analytics tables (viewer)."""
        return await self._send(_Calls.analytics_query(sql, max_rows, timeout))

    async def export_analytics(self, *, full: bool = False) -> dict[str, Any]:
        """Export the events stored since the last export (operator)."""
        return await self._send(_Calls.export_analytics(full))

    async def similar(self, execution_id: str, *, k: int = 5) -> dict[str, Any]:
        """The execution's failure and past failures like it (viewer)."""
        return await self._send(_Calls.similar(execution_id, k))

    async def error_clusters(self, **params: Any) -> list[dict[str, Any]]:
        """Failures grouped by meaning (threshold, min_count, playbook)."""
        return await self._send(_Calls.error_clusters(params))

    async def duration_anomalies(self, **params: Any) -> list[dict[str, Any]]:
        """Step runs of unusual duration (playbook, step, threshold, min_history)."""
        return await self._send(_Calls.duration_anomalies(params))

    async def index(self) -> dict[str, Any]:
        """Index what is new in the server's event log now (operator)."""
        return await self._send(_Calls.index())

    async def generate(
        self,
        description: str,
        constraints: dict[str, Any] | None = None,
        *,
        register: bool = False,
    ) -> dict[str, Any]:
        """A playbook draft for ``description`` with its validation and dry-run report
        (operator; agents too). ``constraints``: name, path, kinds, workload, fixtures,
        max_repairs, examples, offline."""
        return await self._send(_Calls.generate(description, constraints, register))

    async def promote(
        self,
        path: str | None = None,
        *,
        version: int | None = None,
        content: str | None = None,
        comment: str | None = None,
    ) -> dict[str, Any]:
        """Let a generated draft (by catalog ``path`` or YAML ``content``) run live; only a
        human operator's token may (``Forbidden`` otherwise)."""
        return await self._send(_Calls.promote(path, version, content, comment))

    async def explain(self, execution_id: str) -> dict[str, Any]:
        """Why the execution failed: causes, evidence, suggested fixes (viewer)."""
        return await self._send(_Calls.explain(execution_id))

    async def feedback(
        self,
        execution_id: str,
        *,
        helpful: bool,
        comment: str | None = None,
        cause: str | None = None,
    ) -> dict[str, Any]:
        """Record whether the explanation of the execution helped (operator)."""
        return await self._send(_Calls.feedback(execution_id, helpful, comment, cause))

    async def suggest_proposals(self, playbook: str | None = None) -> dict[str, Any]:
        """Measure applied changes that are due and raise the learners' new proposals
        (operator): ``{proposed, pending, suppressed, evaluated}``."""
        return await self._send(_Calls.suggest_proposals(playbook))

    async def proposals(self, status: str | None = None) -> list[dict[str, Any]]:
        """Policy proposals, newest first (one ``status`` if given)."""
        return await self._send(_Calls.proposals(status))

    async def proposal(self, proposal_id: str) -> dict[str, Any]:
        """One policy proposal; ``NotFound`` for an unknown id."""
        return await self._send(_Calls.proposal(proposal_id))

    async def decide_proposal(
        self, proposal_id: str, *, approved: bool, comment: str | None = None
    ) -> dict[str, Any]:
        """Approve or reject a proposal (a human approver who did not propose it; a
        rejection needs a comment); answers the proposal after the decision."""
        return await self._send(_Calls.decide_proposal(proposal_id, approved, comment))

    async def submit_proposal(
        self,
        playbook: str,
        *,
        kind: str,
        patch: list[dict[str, Any]],
        rationale: str,
        version: int | None = None,
        step: str | None = None,
    ) -> dict[str, Any]:
        """Propose a hand-written patch against a catalog version (operator)."""
        body = {
            "playbook": playbook,
            "version": version,
            "step": step,
            "kind": kind,
            "patch": patch,
            "rationale": rationale,
        }
        return await self._send(_Calls.submit_proposal(body))

    async def wait(
        self, execution_id: str, *, after_seq: int = 0, on_event: EventListener | None = None
    ) -> ExecutionOutcome:
        """Follow the execution until it finishes or pauses and return its outcome, calling
        ``on_event`` with each event after ``after_seq`` in order."""
        follow = _Follow(execution_id, after_seq, on_event)
        while True:
            follow.seen(await self.events(execution_id, after_seq=follow.after, wait=LONG_POLL))
            execution = await self.get_execution(execution_id)
            if execution.settled:
                follow.seen(await self.events(execution_id, after_seq=follow.after))
                return execution.outcome()


class Client:
    """The API over ``httpx.Client``; use ``with`` or call :meth:`close`."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        """``http`` replaces the underlying client (its base URL and transport are used)."""
        self._token = token
        self._http = http or httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: _Call[T]) -> T:
        request = self._http.build_request(
            call.method,
            call.path,
            json=call.body,
            params=call.params,
            headers=_headers(self._token),
            timeout=call.timeout if call.timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        try:
            response = self._http.send(request)
        except httpx.TransportError as exc:
            raise _unreachable(request, exc) from exc
        return _result(call, response)

    def register(self, content: str) -> Registered:
        """Register playbook YAML; raise ``PlaybookInvalid`` with its issues."""
        return self._send(_Calls.register(content))

    def set_credential(self, name: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """Store a credential on the server, encrypted (admin); answers name, kind, fields."""
        return self._send(_Calls.set_credential(name, kind, data))

    def list_credentials(self) -> list[dict[str, Any]]:
        """The server's credentials by name and kind (admin; values never leave)."""
        return self._send(_Calls.list_credentials())

    def delete_credential(self, name: str) -> None:
        """Delete a credential on the server (admin); ``NotFound`` when it is not stored."""
        self._send(_Calls.delete_credential(name))

    def list_playbooks(self) -> list[dict[str, Any]]:
        """The latest version of every playbook: path, version, name, description."""
        return self._send(_Calls.list_playbooks())

    def get_playbook(self, path: str, version: int | None = None) -> dict[str, Any]:
        """One catalog version with its YAML ``content``."""
        return self._send(_Calls.get_playbook(path, version))

    def execute(
        self, path: str, *, version: int | None = None, workload: dict[str, Any] | None = None
    ) -> Started:
        """Start an execution of a catalog playbook."""
        return self._send(_Calls.execute(path, version, workload))

    def get_execution(self, execution_id: str) -> Execution:
        return self._send(_Calls.get_execution(execution_id))

    def list_executions(
        self, *, status: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        return self._send(_Calls.list_executions(status, limit))

    def events(self, execution_id: str, *, after_seq: int = 0, wait: float = 0) -> list[Event]:
        """Events with ``seq > after_seq``; with ``wait``, hold an empty answer that long."""
        return self._send(_Calls.events(execution_id, after_seq, wait))

    def cancel(self, execution_id: str, reason: str = "cancelled by request") -> Started:
        return self._send(_Calls.cancel(execution_id, reason))

    def report(self, events: Sequence[Event]) -> None:
        """Post worker events (needs the worker role)."""
        self._send(_Calls.report(events))

    def approvals(self) -> list[PendingApproval]:
        return self._send(_Calls.approvals())

    def decide(self, approval_id: str, *, approved: bool, comment: str | None = None) -> Decision:
        """Approve or reject; ``Forbidden`` unless the token is a human approver's."""
        return self._send(_Calls.decide(approval_id, approved, comment))

    def search(
        self,
        text: str,
        *,
        kind: str | None = None,
        filters: dict[str, Any] | None = None,
        k: int = 10,
    ) -> list[dict[str, Any]]:
        """Search execution history by meaning; hits best first (viewer)."""
        return self._send(_Calls.search(text, kind, filters, k))

    def step_statistics(self, playbook: str, step: str | None = None) -> dict[str, Any]:
        """Statistics of one step, or of every step with finished runs (viewer)."""
        return self._send(_Calls.step_statistics(playbook, step))

    def analytics_query(
        self, sql: str, *, max_rows: int = 1000, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Read-only ClickHouse SQL over the analytics tables (viewer)."""
        return self._send(_Calls.analytics_query(sql, max_rows, timeout))

    def export_analytics(self, *, full: bool = False) -> dict[str, Any]:
        """Export the events stored since the last export (operator)."""
        return self._send(_Calls.export_analytics(full))

    def similar(self, execution_id: str, *, k: int = 5) -> dict[str, Any]:
        """The execution's failure and past failures like it (viewer)."""
        return self._send(_Calls.similar(execution_id, k))

    def error_clusters(self, **params: Any) -> list[dict[str, Any]]:
        """Failures grouped by meaning (threshold, min_count, playbook)."""
        return self._send(_Calls.error_clusters(params))

    def duration_anomalies(self, **params: Any) -> list[dict[str, Any]]:
        """Step runs of unusual duration (playbook, step, threshold, min_history)."""
        return self._send(_Calls.duration_anomalies(params))

    def index(self) -> dict[str, Any]:
        """Index what is new in the server's event log now (operator)."""
        return self._send(_Calls.index())

    def generate(
        self,
        description: str,
        constraints: dict[str, Any] | None = None,
        *,
        register: bool = False,
    ) -> dict[str, Any]:
        """A playbook draft for ``description`` with its validation and dry-run report
        (operator; agents too). ``constraints``: name, path, kinds, workload, fixtures,
        max_repairs, examples, offline."""
        return self._send(_Calls.generate(description, constraints, register))

    def promote(
        self,
        path: str | None = None,
        *,
        version: int | None = None,
        content: str | None = None,
        comment: str | None = None,
    ) -> dict[str, Any]:
        """Let a generated draft (by catalog ``path`` or YAML ``content``) run live; only a
        human operator's token may (``Forbidden`` otherwise)."""
        return self._send(_Calls.promote(path, version, content, comment))

    def explain(self, execution_id: str) -> dict[str, Any]:
        """Why the execution failed: causes, evidence, suggested fixes (viewer)."""
        return self._send(_Calls.explain(execution_id))

    def feedback(
        self,
        execution_id: str,
        *,
        helpful: bool,
        comment: str | None = None,
        cause: str | None = None,
    ) -> dict[str, Any]:
        """Record whether the explanation of the execution helped (operator)."""
        return self._send(_Calls.feedback(execution_id, helpful, comment, cause))

    def suggest_proposals(self, playbook: str | None = None) -> dict[str, Any]:
        """Measure applied changes that are due and raise the learners' new proposals
        (operator): ``{proposed, pending, suppressed, evaluated}``."""
        return self._send(_Calls.suggest_proposals(playbook))

    def proposals(self, status: str | None = None) -> list[dict[str, Any]]:
        """Policy proposals, newest first (one ``status`` if given)."""
        return self._send(_Calls.proposals(status))

    def proposal(self, proposal_id: str) -> dict[str, Any]:
        """One policy proposal; ``NotFound`` for an unknown id."""
        return self._send(_Calls.proposal(proposal_id))

    def decide_proposal(
        self, proposal_id: str, *, approved: bool, comment: str | None = None
    ) -> dict[str, Any]:
        """Approve or reject a proposal (a human approver who did not propose it; a
        rejection needs a comment); answers the proposal after the decision."""
        return self._send(_Calls.decide_proposal(proposal_id, approved, comment))

    def submit_proposal(
        self,
        playbook: str,
        *,
        kind: str,
        patch: list[dict[str, Any]],
        rationale: str,
        version: int | None = None,
        step: str | None = None,
    ) -> dict[str, Any]:
        """Propose a hand-written patch against a catalog version (operator)."""
        body = {
            "playbook": playbook,
            "version": version,
            "step": step,
            "kind": kind,
            "patch": patch,
            "rationale": rationale,
        }
        return self._send(_Calls.submit_proposal(body))

    def wait(
        self, execution_id: str, *, after_seq: int = 0, on_event: EventListener | None = None
    ) -> ExecutionOutcome:
        """Follow the execution until it finishes or pauses and return its outcome, calling
        ``on_event`` with each event after ``after_seq`` in order."""
        follow = _Follow(execution_id, after_seq, on_event)
        while True:
            follow.seen(self.events(execution_id, after_seq=follow.after, wait=LONG_POLL))
            execution = self.get_execution(execution_id)
            if execution.settled:
                follow.seen(self.events(execution_id, after_seq=follow.after))
                return execution.outcome()
