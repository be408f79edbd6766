"""The review pages over HTTP (ASGI, in process): login, each page's rendering, deciding
proposals and workflow approvals, and the CSRF and role checks of every POST."""

from __future__ import annotations

import re
from html import unescape

import httpx
import pytest

from noetl_agent.api import create_app
from tests.api.conftest import GATE, start
from tests.review.conftest import browser, csrf_of, login, propose

ERROR_PARTS = ("What is wrong:", "How to fix it:")


def _is_error_page(html: str, *needles: str) -> None:
    html = unescape(html)
    for part in (*ERROR_PARTS, *needles):
        assert part in html, f"{part!r} not on the page:\n{html[:3000]}"


async def test_login_exchanges_a_token_for_a_session_cookie(api, stack):
    first = await api.get("/review/")
    assert (first.status_code, first.headers["location"]) == (303, "/review/login")
    form = await api.get("/review/login")
    assert 'type="password"' in form.text

    forged = await api.post("/review/login", data={"csrf": "guess", "token": "x"})
    assert forged.status_code == 403 and "expired or came from another site" in forged.text
    nonce = csrf_of(forged.text)  # the refused form comes back fresh
    unknown = await api.post("/review/login", data={"csrf": nonce, "token": "noetl_nope"})
    assert unknown.status_code == 401 and "unknown or revoked" in unknown.text
    nonce = csrf_of(unknown.text)
    worker = await api.post("/review/login", data={"csrf": nonce, "token": stack.secrets["worker"]})
    assert worker.status_code == 403 and "no role that may read the review queue" in worker.text

    nonce = csrf_of(worker.text)
    token = stack.secrets["viewer"]
    done = await api.post("/review/login", data={"csrf": nonce, "token": token})
    assert (done.status_code, done.headers["location"]) == (303, "/review/")
    cookie = next(c for c in done.headers.get_list("set-cookie") if c.startswith("noetl_review="))
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/review"} <= attributes
    assert token not in cookie  # sealed, not the token itself

    queue = await api.get("/review/")
    assert queue.status_code == 200
    assert 'data-principal="viewer"' in queue.text and "read-only" in queue.text
    assert queue.headers["cache-control"] == "no-store"
    policy = queue.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert queue.headers["x-frame-options"] == "DENY"
    assert (await api.get("/review/login")).headers["location"] == "/review/"

    no_csrf = await api.post("/review/logout", data={})
    assert no_csrf.status_code == 403
    out = await api.post("/review/logout", data={"csrf": csrf_of(queue.text)})
    assert (out.status_code, out.headers["location"]) == (303, "/review/login")
    assert (await api.get("/review/")).headers["location"] == "/review/login"


async def test_a_forged_or_revoked_session_is_logged_out(api, stack):
    api.cookies.set("noetl_review", "gAAAAAforged", domain="noetl.test", path="/review")
    assert (await api.get("/review/")).status_code == 303
    api.cookies.clear()
    await login(api, stack.secrets["approver"])
    await stack.tokens.revoke("approver")
    again = await api.get("/review/")
    assert (again.status_code, again.headers["location"]) == (303, "/review/login")
    posted = await api.post("/review/logout", data={"csrf": "x"})
    assert posted.status_code == 401
    _is_error_page(posted.text, "not logged in", "Log in")


async def test_the_queue_and_a_proposal_with_its_evidence(api, stack):
    pid = await propose(api, stack)
    for _ in range(3):
        started = await api.post(
            "/api/execute", json={"path": "api/hello"}, headers=stack.auth("admin")
        )
        await stack.engine.wait(started.json()["execution_id"], timeout=10)
    await login(api, stack.secrets["approver"])

    queue = (await api.get("/review/")).text
    pending = queue.split('id="pending-proposals"')[1].split('id="pending-approvals"')[0]
    assert f'data-id="{pid}"' in pending and "5 is the right number" in pending
    assert "api/hello v1" in pending and "0 of 1" in pending

    page = await api.get(f"/review/proposals/{pid}")
    assert page.status_code == 200
    html = page.text
    assert '<span class="del">-  n: 1</span>' in html
    assert '<span class="add">+  n: 5</span>' in html
    row = re.search(r'<tr class="sample">(.*?)</tr>', html, re.S)
    assert row is not None
    cells = re.findall(r"<td>(.*?)</td>", row.group(1), re.S)
    assert cells[:3] == ["v1 (before)", "3", "0"]
    assert cells[3].startswith("0.0% (0.0\u2013")  # the Wilson interval of 0 of 3
    assert html.count("<svg") == 3 and html.count('class="ok"') == 3
    assert "<dt>source</dt><dd>hand-written</dd>" in html
    assert "None shown: the learner recorded no search for similar failures" in html
    assert 'value="approve"' in html and 'value="reject"' in html


async def test_approving_on_the_page_registers_the_new_version(api, stack):
    pid = await propose(api, stack)
    csrf = await login(api, stack.secrets["approver"])
    decided = await api.post(
        f"/review/proposals/{pid}/decision", data={"csrf": csrf, "decision": "approve"}
    )
    assert (decided.status_code, decided.headers["location"]) == (303, f"/review/proposals/{pid}")
    page = (await api.get(decided.headers["location"])).text
    assert '<span class="status applied" id="status">applied</span>' in page
    assert "api/hello version 2 was registered from version 1" in page
    assert "v2 (after)" in page and 'value="approve"' not in page
    entry = await api.get("/api/catalog/api/hello", headers=stack.auth("viewer"))
    assert entry.json()["version"] == 2 and "n: 5" in entry.json()["content"]
    queue = (await api.get("/review/")).text
    decided_part = queue.split('id="decided-proposals"')[1]
    assert "approved by <strong>approver</strong>" in decided_part and "v2" in decided_part


async def test_a_rejection_needs_a_comment_and_shows_who_and_why(api, stack):
    pid = await propose(api, stack)
    csrf = await login(api, stack.secrets["approver"])
    url = f"/review/proposals/{pid}/decision"
    bare = await api.post(url, data={"csrf": csrf, "decision": "reject", "comment": "  "})
    assert bare.status_code == 422
    assert "A rejection needs a comment saying why" in bare.text
    assert '<span class="status pending" id="status">' in bare.text
    odd = await api.post(url, data={"csrf": csrf, "decision": "maybe"})
    assert odd.status_code == 400 and "must be 'approve' or 'reject'" in unescape(odd.text)

    done = await api.post(url, data={"csrf": csrf, "decision": "reject", "comment": "too big"})
    assert done.status_code == 303
    proposal = (await api.get("/api/proposals/" + pid, headers=stack.auth("viewer"))).json()
    assert proposal["status"] == "rejected"
    assert proposal["decisions"][0]["comment"] == "too big"
    queue = (await api.get("/review/")).text.split('id="decided-proposals"')[1]
    assert "rejected by <strong>approver</strong>" in queue and "“too big”" in queue
    again = await api.post(url, data={"csrf": csrf, "decision": "approve"})
    assert again.status_code == 409
    _is_error_page(again.text, "already decided (rejected)", "Reload the review queue")


@pytest.mark.parametrize(
    ("who", "csrf", "status", "message"),
    [
        (None, "", 401, "not logged in"),
        ("approver", "", 403, "CSRF token is missing or does not match"),
        ("approver", "wrong", 403, "CSRF token is missing or does not match"),
        ("approver", "other-session", 403, "CSRF token is missing or does not match"),
        ("viewer", "own", 403, "it needs the approver role"),
        ("agent-approver", "own", 403, "only a human approver can"),
        ("admin", "own", 403, "it proposed it"),
    ],
)
async def test_decision_endpoints_check_session_csrf_and_role(
    api, stack, who, csrf, status, message
):
    pid = await propose(api, stack, "admin")
    approval = await start(api, stack, GATE)
    other = browser(stack)
    async with other:
        other_csrf = await login(other, stack.secrets["viewer"])
    own = await login(api, stack.secrets[who]) if who else ""
    token = {"own": own, "other-session": other_csrf}.get(csrf, csrf)
    for url in (
        f"/review/proposals/{pid}/decision",
        f"/review/approvals/{approval}/review%231/decision",
    ):
        if who == "admin" and "approvals" in url:
            continue  # an admin may decide workflow approvals: only proposals have a proposer
        answer = await api.post(url, data={"csrf": token, "decision": "approve"})
        assert answer.status_code == status, (url, answer.text[:2000])
        _is_error_page(answer.text, message)
    proposal = (await api.get("/api/proposals/" + pid, headers=stack.auth("viewer"))).json()
    assert (proposal["status"], proposal["decisions"]) == ("pending", [])
    waiting = (await api.get("/api/approvals", headers=stack.auth("viewer"))).json()
    assert [item["execution_id"] for item in waiting] == [approval]


@pytest.mark.parametrize("who", ["viewer", "agent-approver", "operator"])
async def test_viewers_and_agents_see_no_decision_buttons(api, stack, who):
    pid = await propose(api, stack, "admin")
    await start(api, stack, GATE)
    await login(api, stack.secrets[who])
    page = (await api.get(f"/review/proposals/{pid}")).text
    assert 'value="approve"' not in page and 'class="muted read-only">Read-only' in page
    queue = (await api.get("/review/")).text
    assert "Ship it?" in queue and 'value="approve"' not in queue


async def test_the_proposer_sees_why_it_cannot_decide(api, stack):
    pid = await propose(api, stack, "admin")
    await login(api, stack.secrets["admin"])
    page = unescape((await api.get(f"/review/proposals/{pid}")).text)
    assert "'admin' proposed this; another approver must decide it." in page
    assert 'value="approve"' not in page


async def test_a_workflow_approval_decided_on_the_page(api, stack):
    execution_id = await start(api, stack, GATE)
    csrf = await login(api, stack.secrets["approver"])
    queue = (await api.get("/review/")).text
    assert f'data-id="{execution_id}/review#1"' in queue and "Ship it?" in queue
    url = f"/review/approvals/{execution_id}/review%231/decision"
    bare = await api.post(url, data={"csrf": csrf, "decision": "reject"})
    assert bare.status_code == 422 and "A rejection needs a comment saying why" in bare.text

    done = await api.post(url, data={"csrf": csrf, "decision": "approve", "comment": "go"})
    assert (done.status_code, done.headers["location"]) == (303, "/review/#decided-approvals")
    outcome = await stack.engine.wait(execution_id, timeout=10)
    assert outcome.status == "completed"
    decided = (await api.get("/review/")).text.split('id="decided-approvals"')[1]
    assert f"{execution_id}/review#1" in decided and "approver" in decided and "go" in decided
    twice = await api.post(url, data={"csrf": csrf, "decision": "approve"})
    assert twice.status_code == 409 and "already decided" in twice.text

    page = await api.get(f"/review/executions/{execution_id}")
    assert page.status_code == 200
    html = page.text
    assert '<span class="status completed" id="status">completed</span>' in html
    assert html.count('class="step"') == 3  # start, review, ship
    assert "<svg" in html and html.count('class="span success"') == 3
    assert "approval.decided" in html and html.count('<tr class="event">') > 5


async def test_error_pages_say_what_is_wrong_and_how_to_fix_it(api, stack):
    await login(api, stack.secrets["viewer"])
    cases = [
        ("/review/proposals/p-none-1", 404, "no proposal 'p-none-1'"),
        ("/review/executions/nowhere", 404, "nowhere"),
        ("/review/elsewhere", 404, "there is no review page at /review/elsewhere"),
        ("/review/proposals/p-none-1/decision", 405, "GET is not allowed"),
    ]
    for url, status, detail in cases:
        answer = await api.get(url)
        assert answer.status_code == status, url
        assert answer.headers["content-type"].startswith("text/html")
        _is_error_page(answer.text, detail)
    huge = await api.post(
        "/review/logout", content=b"csrf=" + b"x" * 70_000, headers={"content-type": "x"}
    )
    assert huge.status_code == 400
    _is_error_page(huge.text, "larger than 64 KiB")


async def test_stale_proposals_are_refused_with_409(api, stack):
    pid = await propose(api, stack)
    csrf = await login(api, stack.secrets["approver"])
    current = await api.get("/api/catalog/api/hello", headers=stack.auth("viewer"))
    newer = current.json()["content"].replace("n: 1", "n: 2")
    await api.post("/api/catalog/register", json={"content": newer}, headers=stack.auth("admin"))
    page = (await api.get(f"/review/proposals/{pid}")).text
    assert "This proposal is stale; it can no longer be decided." in page
    answer = await api.post(
        f"/review/proposals/{pid}/decision", data={"csrf": csrf, "decision": "approve"}
    )
    assert answer.status_code == 409
    _is_error_page(answer.text, "no longer the latest; suggest again")


async def test_a_quorum_of_two_needs_two_approvers_on_the_page(stack, monkeypatch):
    monkeypatch.setenv("NOETL_POLICY_QUORUM", "2")
    app = create_app(stack.engine, stack.tokens)
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://noetl.test") as first,
        httpx.AsyncClient(transport=transport, base_url="http://noetl.test") as second,
    ):
        pid = await propose(first, stack)
        url = f"/review/proposals/{pid}/decision"
        csrf = await login(first, stack.secrets["approver"])
        one = await first.post(url, data={"csrf": csrf, "decision": "approve"})
        assert one.status_code == 303
        page = unescape((await first.get(f"/review/proposals/{pid}")).text)
        assert "Needs 2 approval(s), has 1." in page
        assert "You approved this already; it needs 1 more distinct approver(s)." in page
        assert 'value="approve"' not in page

        csrf = await login(second, stack.secrets["admin"])
        two = await second.post(url, data={"csrf": csrf, "decision": "approve"})
        assert two.status_code == 303
        page = (await second.get(f"/review/proposals/{pid}")).text
        assert '<span class="status applied" id="status">applied</span>' in page


async def test_a_link_to_a_page_comes_back_there_after_logging_in(api, stack):
    pid = await propose(api, stack)
    first = await api.get(f"/review/proposals/{pid}")
    assert first.headers["location"] == f"/review/login?next=/review/proposals/{pid}"
    form = await api.get(first.headers["location"])
    assert f'name="next" value="/review/proposals/{pid}"' in form.text
    fields = {"csrf": csrf_of(form.text), "token": stack.secrets["viewer"]}
    done = await api.post("/review/login", data={**fields, "next": f"/review/proposals/{pid}"})
    assert done.headers["location"] == f"/review/proposals/{pid}"
    api.cookies.clear()
    for elsewhere in (
        "https://evil.example/",
        "//evil.example/review/",
        "/api/catalog",
        "/review/\\evil.example",
        "/review/\r\nSet-Cookie: x=1",
    ):
        form = await api.get("/review/login")
        fields = {"csrf": csrf_of(form.text), "token": stack.secrets["viewer"]}
        done = await api.post("/review/login", data={**fields, "next": elsewhere})
        assert done.headers["location"] == "/review/", elsewhere
        api.cookies.clear()


async def test_an_unexpected_failure_shows_the_error_page(stack, monkeypatch, caplog):
    transport = httpx.ASGITransport(app=stack.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://noetl.test") as client:
        await login(client, stack.secrets["viewer"])

        async def broken(status: str | None = None) -> list[dict[str, object]]:
            raise RuntimeError("the disk caught fire")

        monkeypatch.setattr(stack.app.state.proposals, "list", broken)
        answer = await client.get("/review/")
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("text/html")
    assert "the server failed unexpectedly while showing this page" in answer.text
    assert "the server log has the details" in answer.text
    assert "the disk caught fire" not in answer.text  # details stay in the log
    assert "the disk caught fire" in caplog.text


GATED = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: gated, path: review/gated}
workflow:
  - step: review
    tool: {kind: approval, prompt: "Release?", approvers: [alice]}
"""


async def test_an_approval_reserved_for_someone_else_is_read_only(api, stack):
    execution_id = await start(api, stack, GATED)
    csrf = await login(api, stack.secrets["approver"])
    queue = unescape((await api.get("/review/")).text)
    assert "Read-only: human principal 'approver' cannot" in queue
    assert "reserved for alice" in queue and 'value="approve"' not in queue
    url = f"/review/approvals/{execution_id}/review%231/decision"
    refused = await api.post(url, data={"csrf": csrf, "decision": "approve"})
    assert refused.status_code == 403
    _is_error_page(refused.text, "reserved for alice")

    alice = await stack.tokens.create("alice", "human", ["approver"])
    api.cookies.clear()
    csrf = await login(api, alice)
    assert 'value="approve"' in (await api.get("/review/")).text
    done = await api.post(url, data={"csrf": csrf, "decision": "approve"})
    assert done.status_code == 303
    assert (await stack.engine.wait(execution_id, timeout=10)).status == "completed"
