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
    Forbidden, Unauthorized, ClaimNotHeld (a Conflict naming commands)  noetl_agent.errors
    ApiError (any other refusal; ``status`` and ``problem`` attached)
    └── ServerUnavailable (no answer: not running, wrong address, timed out)

This module imports httpx and nothing of the server, so a command line that talks to a
server starts quickly.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field, fields
from types import TracebackType
from typing import Any, Generic, ParamSpec, Self, TypeVar, overload
from urllib.parse import quote

import httpx

from engine.core.events import Event
from engine.errors import Conflict, Issue, NoetlError, NotFound, PlaybookInvalid, StoreError
from engine.runtime.embedded import ExecutionOutcome
from noetl_agent.errors import ApiError, ClaimNotHeld, Forbidden, ServerUnavailable, Unauthorized
from noetl_agent.executions import PendingApproval

T = TypeVar("T")
P = ParamSpec("P")
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
    commands = problem.get("commands")
    if slug == "conflict" and isinstance(commands, list):
        return ClaimNotHeld(detail, [str(command) for command in commands])
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


def _request(
    http: httpx.Client | httpx.AsyncClient, call: _Call[Any], token: str | None
) -> httpx.Request:
    """The HTTP request of ``call`` on ``http``, with ``token`` as the bearer."""
    return http.build_request(
        call.method,
        call.path,
        json=call.body,
        params=call.params,
        headers={"Authorization": f"Bearer {token}"} if token else {},
        timeout=call.timeout if call.timeout is not None else httpx.USE_CLIENT_DEFAULT,
    )


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


class _Endpoint(Generic[P, T]):
    """One call of the API, defined once by the function that builds its request: a method
    of both clients, answering the parsed result on a :class:`Client` and a coroutine of
    it on an :class:`AsyncClient`, with the parameters and docstring of that function."""

    def __init__(self, spec: Callable[P, _Call[T]]) -> None:
        self.spec = spec
        self.__name__ = spec.__name__
        self.__doc__ = spec.__doc__

    @overload
    def __get__(self, client: None, owner: type[Any] | None = None) -> Self: ...

    @overload
    def __get__(self, client: Client, owner: type[Any] | None = None) -> Callable[P, T]: ...

    @overload
    def __get__(
        self, client: AsyncClient, owner: type[Any] | None = None
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, client: _Api | None, owner: type[Any] | None = None) -> Any:
        return self if client is None else client._bind(self.spec)


class _Api(ABC):
    """The calls both clients make, each defined once (see :class:`_Endpoint`)."""

    @abstractmethod
    def _bind(self, spec: Callable[P, _Call[T]]) -> Callable[P, Any]:
        """The method that makes the calls ``spec`` builds with this client."""

    @_Endpoint
    def register(content: str) -> _Call[Registered]:
        """Register playbook YAML; raise ``PlaybookInvalid`` with its issues."""
        return _Call("POST", "/api/catalog/register", _build(Registered), {"content": content})

    @_Endpoint
    def set_credential(name: str, kind: str, data: dict[str, Any]) -> _Call[dict[str, Any]]:
        """Store a credential on the server, encrypted (admin); answers name, kind, fields."""
        body = {"name": name, "kind": kind, "data": data}
        return _Call("POST", "/api/credentials", dict, body)

    @_Endpoint
    def list_credentials() -> _Call[list[dict[str, Any]]]:
        """The server's credentials by name and kind (admin; values never leave)."""
        return _Call("GET", "/api/credentials", list)

    @_Endpoint
    def delete_credential(name: str) -> _Call[None]:
        """Delete a credential on the server (admin); ``NotFound`` when it is not stored."""
        return _Call("DELETE", f"/api/credentials/{_segment(name)}", _ignore)

    @_Endpoint
    def list_playbooks() -> _Call[list[dict[str, Any]]]:
        """The latest version of every playbook: path, version, name, description."""
        return _Call("GET", "/api/catalog", list)

    @_Endpoint
    def get_playbook(path: str, version: int | None = None) -> _Call[dict[str, Any]]:
        """One catalog version with its YAML ``content``."""
        params = {"version": version} if version is not None else None
        return _Call("GET", f"/api/catalog/{quote(path, safe='/')}", dict, params=params)

    @_Endpoint
    def execute(
        path: str, *, version: int | None = None, workload: dict[str, Any] | None = None
    ) -> _Call[Started]:
        """Start an execution of a catalog playbook."""
        body = {"path": path, "version": version, "workload": workload or {}}
        return _Call("POST", "/api/execute", _build(Started), body)

    @_Endpoint
    def get_execution(execution_id: str) -> _Call[Execution]:
        return _Call("GET", f"/api/executions/{_segment(execution_id)}", _build(Execution))

    @_Endpoint
    def list_executions(
        *, status: str | None = None, limit: int = 50
    ) -> _Call[list[dict[str, Any]]]:
        params: dict[str, Any] = {"limit": limit} | ({"status": status} if status else {})
        return _Call("GET", "/api/executions", list, params=params)

    @_Endpoint
    def events(execution_id: str, *, after_seq: int = 0, wait: float = 0) -> _Call[list[Event]]:
        """Events with ``seq > after_seq``; with ``wait``, hold an empty answer that long."""
        path = f"/api/executions/{_segment(execution_id)}/events"
        params = {"after_seq": after_seq, "wait": wait}
        return _Call("GET", path, _events, params=params, timeout=wait + DEFAULT_TIMEOUT)

    @_Endpoint
    def cancel(execution_id: str, reason: str = "cancelled by request") -> _Call[Started]:
        path = f"/api/executions/{_segment(execution_id)}/cancel"
        return _Call("POST", path, _build(Started), {"reason": reason})

    @_Endpoint
    def report(events: Sequence[Event]) -> _Call[None]:
        """Post worker events (needs the worker role)."""
        body = {"events": [event.to_dict() for event in events]}
        return _Call("POST", "/api/events/batch", _ignore, body)

    @_Endpoint
    def approvals() -> _Call[list[PendingApproval]]:
        return _Call(
            "GET", "/api/approvals", lambda d: [_build(PendingApproval)(item) for item in d]
        )

    @_Endpoint
    def decide(approval_id: str, *, approved: bool, comment: str | None = None) -> _Call[Decision]:
        """Approve or reject; ``Forbidden`` unless the token is a human approver's."""
        path = f"/api/approvals/{quote(approval_id, safe='/')}/decision"
        body = {"approved": approved, "comment": comment}
        return _Call("POST", path, _build(Decision), body)

    @_Endpoint
    def search(
        text: str,
        *,
        kind: str | None = None,
        filters: dict[str, Any] | None = None,
        k: int = 10,
    ) -> _Call[list[dict[str, Any]]]:
        """Search execution history by meaning; hits best first (viewer)."""
        body = {"text": text, "kind": kind, "filters": filters or {}, "k": k}
        return _Call("POST", "/api/search", list, body, timeout=SEARCH_TIMEOUT)

    @_Endpoint
    def step_statistics(playbook: str, step: str | None = None) -> _Call[dict[str, Any]]:
        """Statistics of one step, or of every step with finished runs (viewer)."""
        params = {"playbook": playbook} | ({"step": step} if step else {})
        return _Call("GET", "/api/stats/steps", dict, params=params, timeout=SEARCH_TIMEOUT)

    @_Endpoint
    def analytics_query(
        sql: str, *, max_rows: int = 1000, timeout: float = 10.0
    ) -> _Call[dict[str, Any]]:
        """Read-only ClickHouse SQL over the analytics tables (viewer)."""
        body = {"sql": sql, "max_rows": max_rows, "timeout": timeout}
        return _Call("POST", "/api/analytics/query", dict, body, timeout=SEARCH_TIMEOUT)

    @_Endpoint
    def export_analytics(*, full: bool = False) -> _Call[dict[str, Any]]:
        """Export the events stored since the last export (operator)."""
        body = {"full": full}
        return _Call("POST", "/api/analytics/export", dict, body, timeout=SEARCH_TIMEOUT)

    @_Endpoint
    def similar(execution_id: str, *, k: int = 5) -> _Call[dict[str, Any]]:
        """The execution's failure and past failures like it (viewer)."""
        path = f"/api/executions/{_segment(execution_id)}/similar"
        return _Call("GET", path, dict, params={"k": k}, timeout=SEARCH_TIMEOUT)

    @_Endpoint
    def error_clusters(**params: Any) -> _Call[list[dict[str, Any]]]:
        """Failures grouped by meaning (threshold, min_count, playbook)."""
        query = {key: value for key, value in params.items() if value is not None}
        return _Call("GET", "/api/failures/clusters", list, params=query, timeout=SEARCH_TIMEOUT)

    @_Endpoint
    def duration_anomalies(**params: Any) -> _Call[list[dict[str, Any]]]:
        """Step runs of unusual duration (playbook, step, threshold, min_history)."""
        query = {key: value for key, value in params.items() if value is not None}
        return _Call("GET", "/api/steps/anomalies", list, params=query, timeout=SEARCH_TIMEOUT)

    @_Endpoint
    def index() -> _Call[dict[str, Any]]:
        """Index what is new in the server's event log now (operator)."""
        return _Call("POST", "/api/index", dict, timeout=SEARCH_TIMEOUT)

    @_Endpoint
    def generate(
        description: str,
        constraints: dict[str, Any] | None = None,
        *,
        register: bool = False,
    ) -> _Call[dict[str, Any]]:
        """A playbook draft for ``description`` with its validation and dry-run report
        (operator; agents too). ``constraints``: name, path, kinds, workload, fixtures,
        max_repairs, examples, offline."""
        body = {"description": description, "constraints": constraints or {}, "register": register}
        return _Call("POST", "/api/generate", dict, body, timeout=GENERATE_TIMEOUT)

    @_Endpoint
    def promote(
        path: str | None = None,
        *,
        version: int | None = None,
        content: str | None = None,
        comment: str | None = None,
    ) -> _Call[dict[str, Any]]:
        """Let a generated draft (by catalog ``path`` or YAML ``content``) run live; only a
        human operator's token may (``Forbidden`` otherwise)."""
        body = {"path": path, "version": version, "content": content, "comment": comment}
        return _Call("POST", "/api/generate/promote", dict, body)

    @_Endpoint
    def explain(execution_id: str) -> _Call[dict[str, Any]]:
        """Why the execution failed: causes, evidence, suggested fixes (viewer)."""
        path = f"/api/executions/{_segment(execution_id)}/explain"
        return _Call("POST", path, dict, timeout=SEARCH_TIMEOUT)

    @_Endpoint
    def feedback(
        execution_id: str,
        *,
        helpful: bool,
        comment: str | None = None,
        cause: str | None = None,
    ) -> _Call[dict[str, Any]]:
        """Record whether the explanation of the execution helped (operator)."""
        path = f"/api/executions/{_segment(execution_id)}/feedback"
        body = {"helpful": helpful, "comment": comment, "cause": cause}
        return _Call("POST", path, dict, body, timeout=SEARCH_TIMEOUT)

    @_Endpoint
    def suggest_proposals(playbook: str | None = None) -> _Call[dict[str, Any]]:
        """Measure applied changes that are due and raise the learners' new proposals
        (operator): ``{proposed, pending, suppressed, evaluated}``."""
        body = {"playbook": playbook} if playbook else None
        return _Call("POST", "/api/proposals/suggest", dict, body, timeout=SEARCH_TIMEOUT)

    @_Endpoint
    def proposals(status: str | None = None) -> _Call[list[dict[str, Any]]]:
        """Policy proposals, newest first (one ``status`` if given)."""
        params = {"status": status} if status else None
        return _Call("GET", "/api/proposals", list, params=params)

    @_Endpoint
    def proposal(proposal_id: str) -> _Call[dict[str, Any]]:
        """One policy proposal; ``NotFound`` for an unknown id."""
        return _Call("GET", f"/api/proposals/{_segment(proposal_id)}", dict)

    @_Endpoint
    def decide_proposal(
        proposal_id: str, *, approved: bool, comment: str | None = None
    ) -> _Call[dict[str, Any]]:
        """Approve or reject a proposal (a human approver who did not propose it; a
        rejection needs a comment); answers the proposal after the decision."""
        path = f"/api/proposals/{_segment(proposal_id)}/decision"
        return _Call("POST", path, dict, {"approved": approved, "comment": comment})

    @_Endpoint
    def submit_proposal(
        playbook: str,
        *,
        kind: str,
        patch: list[dict[str, Any]],
        rationale: str,
        version: int | None = None,
        step: str | None = None,
    ) -> _Call[dict[str, Any]]:
        """Propose a hand-written patch against a catalog version (operator)."""
        body = {
            "playbook": playbook,
            "version": version,
            "step": step,
            "kind": kind,
            "patch": patch,
            "rationale": rationale,
        }
        return _Call("POST", "/api/proposals", dict, body)


class AsyncClient(_Api):
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
        request = _request(self._http, call, self._token)
        try:
            response = await self._http.send(request)
        except httpx.TransportError as exc:
            raise _unreachable(request, exc) from exc
        return _result(call, response)

    def _bind(self, spec: Callable[P, _Call[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(spec)
        async def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return await self._send(spec(*args, **kwargs))

        return method

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


class Client(_Api):
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
        request = _request(self._http, call, self._token)
        try:
            response = self._http.send(request)
        except httpx.TransportError as exc:
            raise _unreachable(request, exc) from exc
        return _result(call, response)

    def _bind(self, spec: Callable[P, _Call[T]]) -> Callable[P, T]:
        @functools.wraps(spec)
        def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return self._send(spec(*args, **kwargs))

        return method

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
