"""The review page in real headless Chromium (Debian's, driven by Playwright) against
`noetl-agent server` running as a process: log in, see a proposal with its plots,
approve it and see the new version applied; a viewer cannot approve; a rejection
without a comment shows the error.

Chromium comes from Debian (`make test` installs it as root); Playwright's own browser
download is never used. Without it these tests skip loudly, and fail under CI=true.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import HELLO
from tests.processes import NOETL_AGENT, cli, free_port, stop, wait_healthy

CHROMIUM = Path(os.environ.get("NOETL_CHROMIUM", "/usr/bin/chromium"))
# Headless, as root, and quiet on a closed network: no sandbox (root), no GPU, no
# background connections to Google's services (refused here, many at a time).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTUP_SECONDS = 120  # the server imports a lot: slow on a loaded 2-core machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(STARTUP_SECONDS + 180)]  # starts a server
PEOPLE = {  # name -> (kind, role)
    "root": ("human", "admin"),
    "bot": ("agent", "operator"),
    "ann": ("human", "approver"),
    "vic": ("human", "viewer"),
}


def require_browser() -> None:
    """Skip loudly when Chromium or the playwright package is missing; fail under CI."""
    missing = []
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(
            f"Debian's chromium at {CHROMIUM} (`make test` installs it as root: "
            "apt-get install -y --no-install-recommends chromium)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package (`make install`, dev extras)")
    if not missing:
        return
    message = "the browser tests need " + " and ".join(missing)
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI requires it: {message}")
    pytest.skip(f"BROWSER MISSING: {message}")


class Server:
    """A running `noetl-agent server` and the tokens of ``PEOPLE``."""

    def __init__(self, url: str, tokens: dict[str, str]) -> None:
        self.url = url
        self.tokens = tokens

    def api(self, method: str, path: str, who: str = "root", **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def propose(self, value: int) -> str:
        body = {
            "playbook": "api/hello",
            "step": "start",
            "kind": "timeout",
            "patch": [{"op": "replace", "path": "/workload/n", "value": value}],
            "rationale": f"{value} is the right number",
        }
        made = self.api("POST", "/api/proposals", "bot", json=body)
        assert made.status_code == 201, made.text
        return str(made.json()["id"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require_browser()
    home = tmp_path_factory.mktemp("review-home")
    env = dict(os.environ, NOETL_HOME=str(home), NOETL_REVIEW_SECRET="browser-tests")
    env.pop("NOETL_SERVER_URL", None)
    tokens = {}
    for name, (kind, role) in PEOPLE.items():
        created = cli(env, "tokens", "create", "--name", name, "--kind", kind, "--role", role)
        assert created.returncode == 0, created.stderr
        tokens[name] = created.stdout.strip().splitlines()[-1]
    log = home / "server.log"
    port = free_port()
    with log.open("w") as sink:  # a file, not a pipe: access logs must never block it
        process = subprocess.Popen(
            [NOETL_AGENT, "server", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log, timeout=STARTUP_SECONDS)
        running = Server(url, tokens)
        registered = running.api("POST", "/api/catalog/register", json={"content": HELLO})
        assert registered.status_code == 200, registered.text
        yield running
    finally:
        code = stop(process)
        assert code == 0, log.read_text()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    """A page of a fresh Chromium profile (no cookies)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
        )
        try:
            context.set_default_timeout(15_000)
            yield context.new_page()
        finally:
            context.close()
            shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def _log_in(page: Any, server: Server, who: str) -> None:
    page.goto(f"{server.url}/review/")
    assert page.url == f"{server.url}/review/login"  # not logged in yet
    page.fill("#token", server.tokens[who])
    page.click("form[action='/review/login'] button[type=submit]")
    page.wait_for_url(f"{server.url}/review/")
    assert page.get_attribute("[data-principal]", "data-principal") == who


def test_log_in_see_the_plots_approve_and_see_the_new_version(page, server, tmp_path):
    pid = server.propose(7)
    for _ in range(2):
        started = server.api("POST", "/api/execute", json={"path": "api/hello"})
        assert started.status_code == 202, started.text
    runs = server.api("GET", "/api/executions", params={"status": "completed"}).json()
    before = sum(1 for run in runs if run["playbook_version"] == 1)

    _log_in(page, server, "ann")
    page.click(f"tr.proposal[data-id='{pid}'] a")
    page.wait_for_url(re.compile(f".*/review/proposals/{pid}$"))
    assert page.locator("svg.plot").count() == 3
    assert page.locator("svg.plot").first.is_visible()
    assert page.locator("svg.plot rect.ok").count() == before
    assert page.locator("pre.diff .add").inner_text() == "+  n: 7"
    page.screenshot(path=str(tmp_path / "proposal.png"), full_page=True)

    page.fill("#comment-p", "seven it is")
    page.click("button.approve")
    page.wait_for_selector("#applied")
    assert page.inner_text("#status") == "applied"
    assert "api/hello version 2 was registered from version 1" in page.inner_text("#applied")
    assert page.locator("button.approve").count() == 0
    entry = server.api("GET", "/api/catalog/api/hello").json()
    assert entry["version"] == 2 and "n: 7" in entry["content"]

    page.click("text=← Review queue")
    decided = page.locator(f"#decided-proposals tr[data-id='{pid}']")
    assert "approved by ann" in decided.inner_text() and "seven it is" in decided.inner_text()
    page.screenshot(path=str(tmp_path / "queue.png"), full_page=True)


def test_a_viewer_cannot_approve(page, server):
    pid = server.propose(8)
    _log_in(page, server, "vic")
    page.goto(f"{server.url}/review/proposals/{pid}")
    assert page.locator("svg.plot").count() == 3
    assert page.locator("button.approve").count() == 0
    assert "Read-only: 'vic' has no approver role" in page.inner_text("#decide")

    # A hand-made form with the viewer's own session and CSRF token is refused too.
    page.evaluate(
        """(pid) => {
            const form = document.createElement('form');
            form.method = 'post';
            form.action = `/review/proposals/${pid}/decision`;
            for (const [name, value] of [
                ['csrf', document.querySelector("input[name=csrf]").value],
                ['decision', 'approve'],
            ]) {
                const input = document.createElement('input');
                input.type = 'hidden'; input.name = name; input.value = value;
                form.appendChild(input);
            }
            document.body.appendChild(form);
            form.submit();
        }""",
        pid,
    )
    page.wait_for_selector("section.error")
    assert page.inner_text("h1") == "Error 403"
    assert "it needs the approver role" in page.inner_text(".detail")
    status = server.api("GET", f"/api/proposals/{pid}", "vic").json()["status"]
    assert status == "pending"


def test_a_rejection_without_a_comment_shows_the_error(page, server):
    pid = server.propose(9)
    _log_in(page, server, "ann")
    page.goto(f"{server.url}/review/proposals/{pid}")
    page.click("button.reject")
    page.wait_for_selector("#decision-error")
    assert "A rejection needs a comment saying why" in page.inner_text("#decision-error")
    assert page.inner_text("#status") == "pending"

    page.fill("#comment-p", "nine is too many")
    page.click("button.reject")
    page.wait_for_selector(".decisions")
    assert page.inner_text("#status") == "rejected"
    assert "rejected by ann" in page.inner_text(".decisions")
    assert "nine is too many" in page.inner_text(".decisions")


@pytest.mark.parametrize(
    ("ci", "outcome", "reason"),
    [
        ("true", pytest.fail.Exception, "CI requires it: the browser tests need Debian's"),
        ("", pytest.skip.Exception, "BROWSER MISSING: the browser tests need Debian's"),
    ],
)
def test_a_missing_chromium_skips_loudly_and_fails_in_ci(
    monkeypatch, tmp_path, ci, outcome, reason
):
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match=re.escape(reason)):
        require_browser()
