"""A refused request changes nothing. (Who may call which route, and the 401s of a missing
or bad token, are ``test_authorization_matrix``.)"""

from __future__ import annotations

from tests.api.conftest import HELLO


async def test_nothing_is_written_by_a_refused_request(api, stack):
    refused = await api.post(
        "/api/catalog/register", json={"content": HELLO}, headers=stack.auth("viewer")
    )
    assert refused.status_code == 403
    assert await stack.engine.catalog.list() == []
