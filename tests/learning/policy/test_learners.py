"""The learners end to end: real executions against a local service, drafts, the patched
version registered and run again."""

from __future__ import annotations

import textwrap

import pytest

from engine.errors import NotFound
from engine.runtime.embedded import Engine
from learning.policy.history import PolicyHistory
from learning.policy.learners import learn, playbook_version
from learning.policy.model import LearnerConfig, ProposalDraft
from learning.policy.patch import apply_patch, render
from learning.policy.retry import retry_when
from tests.flaky_service import always, every, flaky_service

CONFIG = LearnerConfig(min_samples=5)


def http_playbook(name: str, url: str, *, method: str = "GET", policy: str = "") -> str:
    text = textwrap.dedent(
        f"""\
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {{name: {name}}}
        workflow:
          - step: call
            tool:
              kind: http
              method: {method}
              url: {url}
        """
    )
    if policy:
        text += "      spec:\n        policy:\n" + textwrap.indent(
            textwrap.dedent(policy), " " * 10
        )
    return text


async def run_times(engine: Engine, path: str, times: int) -> list[str]:
    return [(await engine.run(path)).status for _ in range(times)]


async def apply(engine: Engine, draft: ProposalDraft) -> int:
    """Register the draft's patch on its target version; return the new version."""
    version = await playbook_version(engine.catalog, draft.target.playbook, draft.target.version)
    entry = await engine.register(render(apply_patch(version.document, draft.patch)))
    return entry.version


def retry_drafts(drafts: list[ProposalDraft], playbook: str) -> list[ProposalDraft]:
    return [d for d in drafts if d.learner == "retry" and d.target.playbook == playbook]


async def test_learned_retries_remove_failures_and_useless_retries_go(engine: Engine) -> None:
    # 30% of the requests fail with 503 and the next one always succeeds; /deny always
    # refuses; /post fails like /flaky but is a POST.
    plans = {
        "flaky": every(10, {0, 3, 6}),
        "deny": always(401),
        "post": every(10, {0, 3, 6}),
    }
    catch_all = """\
    rules:
      - when: "{{ output.status == 'error' }}"
        then: {do: retry, attempts: 2}
    """
    with flaky_service(plans) as base:
        flaky = await engine.register(http_playbook("flaky", f"{base}/flaky"))
        denied = await engine.register(http_playbook("denied", f"{base}/deny", policy=catch_all))
        poster = await engine.register(http_playbook("poster", f"{base}/post", method="POST"))
        assert (await run_times(engine, flaky.path, 20)).count("failed") == 6
        assert set(await run_times(engine, denied.path, 6)) == {"failed"}
        assert (await run_times(engine, poster.path, 20)).count("failed") == 6

        history = PolicyHistory(engine.events, engine.catalog)
        drafts = await learn(engine.events, engine.catalog, config=CONFIG, history=history)
        assert all(isinstance(draft, ProposalDraft) for draft in drafts)

        # The 503s recover on the next request: retry them once more, quickly.
        (retry,) = retry_drafts(drafts, "flaky")
        assert retry.kind == "retry" and retry.target.to_dict() == {
            "playbook": "flaky",
            "version": 1,
            "step": "call",
        }
        assert retry.evidence["source"] == "next_run"
        assert retry.evidence["per_attempt_success"]["rate"] == 1.0
        rule = retry.patch[0]["value"]["rules"][0]
        assert rule["when"] == retry_when(["http_503"])
        assert rule["then"]["attempts"] == 2
        assert rule["then"]["delay"] == CONFIG.min_retry_delay_s
        assert retry.evidence["expected"]["failures_avoided_per_100_runs"] == pytest.approx(30.0)

        # The 401 never recovers: the catch-all rule is narrowed; nothing is retried more.
        (removal,) = retry_drafts(drafts, "denied")
        assert removal.kind == "retry_remove"
        assert "http_401" in removal.evidence["error_classes"]

        # The POST is never retried, however transient its errors look.
        assert retry_drafts(drafts, "poster") == []

        # Applied, the new versions behave differently.
        assert await apply(engine, retry) == 2
        assert set(await run_times(engine, flaky.path, 10)) == {"completed"}
        assert await apply(engine, removal) == 2
        assert set(await run_times(engine, denied.path, 3)) == {"failed"}

    await history.refresh()
    recovered = [r for r in history.tool_runs("flaky", 2) if len(r.attempts) > 1]
    # Requests 20..34: 20, 23, 26, 30 and 33 failed, each retried into a success.
    assert len(recovered) == 5 and all(r.ok for r in recovered)
    assert all(len(r.attempts) == 1 for r in history.tool_runs("denied", 2))
    assert [e.ok for e in history.execution_runs("flaky", 2)] == [True] * 10

    # Asked again, the learner finds the new policies fit: nothing more to retry.
    again = await learn(engine.events, engine.catalog, config=CONFIG, history=history)
    assert retry_drafts(again, "flaky") == []
    assert retry_drafts(again, "denied") == []


async def test_learning_one_playbook_and_an_unknown_one(engine: Engine) -> None:
    with flaky_service({"flaky": every(10, {0, 3, 6})}) as base:
        flaky = await engine.register(http_playbook("flaky", f"{base}/flaky"))
        await run_times(engine, flaky.path, 20)
    drafts = await learn(engine.events, engine.catalog, playbook="flaky", config=CONFIG)
    assert [d.kind for d in retry_drafts(drafts, "flaky")] == ["retry"]
    # With the default min_samples (10), six failures are not enough to propose anything.
    assert retry_drafts(await learn(engine.events, engine.catalog, playbook="flaky"), "flaky") == []
    with pytest.raises(NotFound):
        await learn(engine.events, engine.catalog, playbook="nowhere", config=CONFIG)
