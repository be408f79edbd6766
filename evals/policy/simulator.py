"""A local HTTP service with controllable, reproducible misbehaviour: the world the policy
eval's playbooks call, and the ground truth its proposals are judged against.

Every route (the first path segment: ``/flaky``, ``/auth/<user>``, ``/orders``...) has a
:class:`Route` behaviour, changeable while serving (:meth:`Simulator.configure`):

- ``fail_rate``: each request fails with ``fail_status`` (503) with this probability,
  drawn from the route's own seeded generator, so a sequence of requests always sees the
  same failures; ``recovery_ms`` keeps a failing route failing that long (an outage);
- ``denied``: the users (second path segment or ``?user=``) refused with
  ``permanent_status`` (401) on every request, whatever the attempt: a permanent error;
- ``latency_ms`` (+ ``latency_spread``, the log-normal sigma of a seeded spread);
- ``pool_ms``: the service time by the calling worker's pool (the ``X-Worker-Pool``
  header set by the worker's transport, ``noetl_agent.demo.service.PoolTransport``), for
  the step whose work is faster on larger hardware;
- ``limit_every`` / ``retry_after_s``: every n-th request gets 429 with ``Retry-After``.

Counters per route (requests, statuses, methods, pools, busy time) feed the report, and
:meth:`Simulator.truth` says which statuses a route returns transiently and which
permanently: what a correct proposal must respect.
"""

from __future__ import annotations

import math
import random
import threading
import time
import zlib
from collections import Counter
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from noetl_agent.demo.service import serve_json


@dataclass(frozen=True, slots=True)
class Route:
    """How one route behaves (see the module docstring)."""

    fail_rate: float = 0.0
    fail_status: int = 503
    recovery_ms: float = 0.0
    denied: frozenset[str] = frozenset()
    permanent_status: int = 401
    latency_ms: float = 0.0
    latency_spread: float = 0.0
    pool_ms: Mapping[str, float] = field(default_factory=dict)
    limit_every: int = 0
    retry_after_s: float = 1.0


@dataclass
class RouteCounters:
    """What a route saw and answered."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    methods: Counter[str] = field(default_factory=Counter)
    pools: Counter[str] = field(default_factory=Counter)
    busy_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "methods": dict(sorted(self.methods.items())),
            "pools": dict(sorted(self.pools.items())),
            "busy_ms": round(self.busy_ms, 1),
        }


@dataclass(frozen=True, slots=True)
class Truth:
    """What a route's errors really are."""

    transient: frozenset[int]  # statuses that a later attempt can get past
    permanent: frozenset[int]  # statuses that no retry ever gets past


def truth(route: Route) -> Truth:
    """Which statuses ``route`` returns transiently and which on every attempt."""
    transient = set()
    if route.fail_rate > 0:
        transient.add(route.fail_status)
    if route.limit_every > 0:
        transient.add(429)
    permanent = {route.permanent_status} if route.denied else set()
    return Truth(frozenset(transient), frozenset(permanent))


class _RouteState:
    def __init__(self, name: str, route: Route, seed: int) -> None:
        self.route = route
        self.rng = random.Random(seed ^ zlib.crc32(name.encode()))
        self.down_until = 0.0
        self.counters = RouteCounters()


class Simulator:
    """The routes' behaviours and counters; :func:`serve` puts it on a port."""

    def __init__(self, routes: Mapping[str, Route], *, seed: int = 7) -> None:
        self.seed = seed
        self._lock = threading.Lock()
        self._routes = {name: _RouteState(name, route, seed) for name, route in routes.items()}

    def configure(self, name: str, **changes: Any) -> None:
        """Change a route's behaviour from now on (the generator carries on)."""
        with self._lock:
            state = self._routes[name]
            state.route = replace(state.route, **changes)

    def route(self, name: str) -> Route:
        with self._lock:
            return self._routes[name].route

    def reseed(self) -> None:
        """Restart every route's generator and clear outages: the same failures again."""
        with self._lock:
            for name, state in self._routes.items():
                state.rng = random.Random(self.seed ^ zlib.crc32(name.encode()))
                state.down_until = 0.0

    def counters(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {name: state.counters.to_dict() for name, state in self._routes.items()}

    def reset_counters(self) -> None:
        with self._lock:
            for state in self._routes.values():
                state.counters = RouteCounters()

    def truth(self, name: str) -> Truth:
        return truth(self.route(name))

    def answer(
        self, method: str, path: str, pool: str | None
    ) -> tuple[int, dict[str, str], dict[str, Any], float]:
        """Decide one request: (status, extra headers, JSON body, service seconds)."""
        parts = urlsplit(path)
        segments = [s for s in parts.path.split("/") if s]
        name = segments[0] if segments else ""
        query = parse_qs(parts.query)
        user = segments[1] if len(segments) > 1 else (query.get("user") or [""])[0]
        with self._lock:
            state = self._routes.get(name)
            if state is None:
                return 404, {}, {"error": f"no route /{name}"}, 0.0
            route = state.route
            counters = state.counters
            counters.requests += 1
            counters.methods[method] += 1
            if pool:
                counters.pools[pool] += 1
            service = route.latency_ms
            if route.latency_spread > 0:
                service *= math.exp(state.rng.gauss(0.0, route.latency_spread))
            if pool and pool in route.pool_ms:
                service = route.pool_ms[pool]
            now = time.monotonic()
            status, headers = 200, {}
            if user and user in route.denied:
                status = route.permanent_status
            elif route.limit_every > 0 and counters.requests % route.limit_every == 0:
                status, headers = 429, {"Retry-After": f"{route.retry_after_s:g}"}
            elif now < state.down_until:
                status = route.fail_status
            elif route.fail_rate > 0 and state.rng.random() < route.fail_rate:
                status = route.fail_status
                state.down_until = now + route.recovery_ms / 1000
            counters.statuses[status] += 1
            counters.busy_ms += service
        body: dict[str, Any] = {"route": name, "status": status}
        if status == 200:
            body.update(ok=True, user=user or None, pool=pool)
        else:
            body["error"] = {401: "token revoked", 429: "slow down"}.get(status, "unavailable")
        return status, headers, body, service / 1000


def serve(simulator: Simulator) -> AbstractContextManager[str]:
    """Serve ``simulator`` on a free port of 127.0.0.1 in a thread; yield the base URL."""
    return serve_json(
        simulator.answer,
        name="policy-simulator",
        methods=("GET", "POST", "PUT", "PATCH", "DELETE"),
    )
