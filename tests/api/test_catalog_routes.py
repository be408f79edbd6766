"""POST /api/catalog/register, GET /api/catalog, GET /api/catalog/{path}."""

from __future__ import annotations

from tests.api.conftest import HELLO, INVALID, register


async def test_register_list_and_read_versions(api, stack):
    admin = stack.auth("admin")
    first = await api.post("/api/catalog/register", json={"content": HELLO}, headers=admin)
    assert first.status_code == 200
    assert first.json() == {"path": "api/hello", "version": 1, "name": "hello"}
    same = await api.post("/api/catalog/register", json={"content": HELLO}, headers=admin)
    assert same.json()["version"] == 1  # unchanged content keeps its version
    changed = HELLO.replace("n: 1", "n: 2")
    second = await api.post("/api/catalog/register", json={"content": changed}, headers=admin)
    assert second.json()["version"] == 2

    listed = await api.get("/api/catalog", headers=stack.auth("viewer"))
    assert listed.status_code == 200
    assert [(e["path"], e["version"], e["name"]) for e in listed.json()] == [
        ("api/hello", 2, "hello")
    ]

    latest = await api.get("/api/catalog/api/hello", headers=stack.auth("viewer"))
    assert latest.json()["version"] == 2
    assert latest.json()["content"] == changed
    old = await api.get("/api/catalog/api/hello", params={"version": 1}, headers=admin)
    assert old.json()["content"] == HELLO


async def test_unknown_path_or_version_is_404(api, stack):
    await register(api, stack, HELLO)
    viewer = stack.auth("viewer")
    for url, params in (("/api/catalog/api/nope", {}), ("/api/catalog/api/hello", {"version": 9})):
        response = await api.get(url, params=params, headers=viewer)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"] == "/problems/not-found"
        assert problem["status"] == 404
        assert problem["instance"] == url
        assert problem["detail"]
    bad = await api.get("/api/catalog/api/hello", params={"version": 0}, headers=viewer)
    assert bad.status_code == 422


async def test_invalid_playbook_is_422_with_every_issue_and_stores_nothing(api, stack):
    response = await api.post(
        "/api/catalog/register", json={"content": INVALID}, headers=stack.auth("operator")
    )

    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "/problems/playbook-invalid"
    assert problem["title"] == "The playbook is invalid"
    issue = problem["issues"][0]
    assert set(issue) == {"path", "line", "message", "hint"}
    assert issue["path"] == "workflow[0].nxet"
    assert issue["line"] == 6
    assert "next" in issue["hint"]
    assert await stack.engine.catalog.list() == []
    assert await stack.engine.events.read_all() == []


async def test_malformed_or_mistyped_bodies(api, stack):
    admin = stack.auth("admin") | {"content-type": "application/json"}
    malformed = await api.post("/api/catalog/register", content=b'{"content": ', headers=admin)
    assert malformed.status_code == 400
    assert malformed.json()["type"] == "/problems/malformed-json"
    assert "not valid JSON" in malformed.json()["detail"]

    for body, location in (
        ({}, "body.content"),
        ({"content": 7}, "body.content"),
        ({"content": HELLO, "extra": 1}, "body.extra"),
        ([HELLO], "body"),
    ):
        response = await api.post("/api/catalog/register", json=body, headers=admin)
        assert response.status_code == 422, body
        problem = response.json()
        assert problem["type"] == "/problems/invalid-request"
        assert problem["errors"][0]["location"] == location
    assert await stack.engine.catalog.list() == []


async def test_oversized_bodies_are_refused_before_parsing(api, stack):
    limit = 1024 * 1024
    huge = {"content": HELLO + "#" * limit}
    declared = await api.post("/api/catalog/register", json=huge, headers=stack.auth("admin"))
    assert declared.status_code == 413
    problem = declared.json()
    assert problem["type"] == "/problems/payload-too-large"
    assert str(limit) in problem["detail"]
    assert problem["limit_bytes"] == limit

    async def chunks():  # no Content-Length: the limit applies as the body streams in
        yield b'{"content": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}'

    streamed = await api.post(
        "/api/catalog/register",
        content=chunks(),
        headers=stack.auth("admin") | {"content-type": "application/json"},
    )
    assert streamed.status_code == 413
    assert streamed.json()["limit_bytes"] == limit
    assert await stack.engine.catalog.list() == []
