"""Fixtures of the review page tests: the API app in process (``stack``, ``api``) and
helpers that log a browser-like client in and raise proposals to review."""

from __future__ import annotations

import re

import httpx

from tests.api.conftest import HELLO, api, register, stack  # noqa: F401  (the API fixtures)

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = _CSRF.search(html)
    assert match, f"no CSRF field on the page:\n{html[:2000]}"
    return match.group(1)


async def login(client: httpx.AsyncClient, token: str) -> str:
    """Log ``client`` in with ``token`` through the login form; return the session's CSRF
    token (read from the queue page)."""
    form = await client.get("/review/login")
    assert form.status_code == 200, form.text
    answer = await client.post("/review/login", data={"csrf": csrf_of(form.text), "token": token})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/review/"
    queue = await client.get("/review/")
    assert queue.status_code == 200, queue.text
    return csrf_of(queue.text)


async def propose(client: httpx.AsyncClient, on, who: str = "operator", value: int = 5) -> str:
    """Register HELLO (once) and submit a hand-written proposal as ``who`` through
    ``client`` of the stack ``on``; its id."""
    listed = await client.get("/api/catalog", headers=on.auth("viewer"))
    if not any(entry["path"] == "api/hello" for entry in listed.json()):
        await register(client, on, HELLO)
    body = {
        "playbook": "api/hello",
        "step": "start",
        "kind": "timeout",
        "patch": [{"op": "replace", "path": "/workload/n", "value": value}],
        "rationale": f"{value} is the right number",
    }
    made = await client.post("/api/proposals", json=body, headers=on.auth(who))
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def browser(on) -> httpx.AsyncClient:
    """A fresh client of the in-process app of stack ``on``, with a cookie jar of its
    own (one person)."""
    transport = httpx.ASGITransport(app=on.app)
    return httpx.AsyncClient(transport=transport, base_url="http://noetl.test")
