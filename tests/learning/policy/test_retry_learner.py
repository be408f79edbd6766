"""The retry learner on synthetic histories whose answers are known in advance."""

from __future__ import annotations

import dataclasses
import math
import textwrap
from collections.abc import Sequence
from typing import Any

import pytest
import yaml

from engine.core.policy import decide_after_attempt
from engine.dsl.loader import parse_playbook
from engine.dsl.models import Policy
from learning.policy.model import Attempt, LearnerConfig, PlaybookVersion, ToolRun
from learning.policy.patch import apply_patch, render
from learning.policy.retry import (
    class_match,
    explain_skips,
    nice,
    retry_findings,
    retry_proposals,
    retry_when,
)

CONFIG = LearnerConfig()


def version_of(step_yaml: str, *, extra: str = "", version: int = 1) -> PlaybookVersion:
    text = (
        "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: svc}\n"
        + extra
        + "workflow:\n"
        + textwrap.indent(textwrap.dedent(step_yaml), "  ")
    )
    return PlaybookVersion("svc", version, text, parse_playbook(text), yaml.safe_load(text))


def http_step(method: str = "GET", policy: str = "", spec: str = "") -> str:
    lines = [
        "- step: call",
        *([f"  spec: {spec}"] if spec else []),
        "  tool:",
        "    kind: http",
        f"    method: {method}",
        "    url: http://svc.test/thing",
    ]
    if policy:
        lines.append("    spec:")
        lines.append("      policy:")
        lines.append(textwrap.indent(textwrap.dedent(policy), "        ").rstrip("\n"))
    return "\n".join(lines) + "\n"


class Clock:
    """Hands out run start times: runs follow each other with ``gap`` seconds between."""

    def __init__(self, gap: float = 1.0) -> None:
        self.now = 1_000_000.0
        self.gap = gap


def _retryable(error_class: str) -> bool:
    """What the tools say: 5xx, timeouts and lost connections may pass."""
    return error_class.startswith("http_5") or error_class in ("timeout", "connection")


def tool_run(
    execution: str,
    outcomes: Sequence[str | None],
    *,
    start: float,
    delays: Sequence[float] = (),
    attempt_s: float = 0.1,
    step: str = "call",
    kind: str = "http",
    tool_index: int | None = None,
) -> ToolRun:
    """A run whose attempts end as ``outcomes`` (None: success, else the error class)."""
    attempts = []
    moment = start
    for number, outcome in enumerate(outcomes, start=1):
        delay = delays[number - 2] if number > 1 and number - 2 < len(delays) else None
        moment += (delay or 0.0) + attempt_s
        attempts.append(
            Attempt(
                number=number,
                ok=outcome is None,
                error_class=outcome,
                retryable=None if outcome is None else _retryable(outcome),
                ended_at=moment,
                delay_before_s=delay,
            )
        )
    return ToolRun(
        execution_id=execution,
        playbook_path="svc",
        playbook_version=1,
        step=step,
        step_run_id=f"{step}#1",
        tool_kind=kind,
        pool="cpu",
        attempts=tuple(attempts),
        ok=outcomes[-1] is None,
        started_at=start,
        finished_at=moment,
        wall_ms=(moment - start) * 1000,
        tool_index=tool_index,
    )


def sequential(
    patterns: Sequence[Sequence[str | None]], *, gap: float = 1.0, **kw: Any
) -> list[ToolRun]:
    """One run per execution, each starting ``gap`` seconds after the previous ended."""
    runs = []
    moment = 1_000_000.0
    for index, outcomes in enumerate(patterns):
        run = tool_run(f"e{index:04d}", outcomes, start=moment, **kw)
        runs.append(run)
        moment = run.finished_at + gap
    return runs


Group = tuple[int, Sequence[str | None]]
FAILED: Group = (1, ["http_503"])
SUCCEEDED: Group = (1, [None])


def repeated(*groups: Group) -> list[Sequence[str | None]]:
    """``(count, outcomes)`` groups spelled out, one run's outcomes per item."""
    return [list(outcomes) for count, outcomes in groups for _ in range(count)]


def decide(policy_doc: dict[str, Any] | None, kind: str, code: Any, attempt: int = 1) -> Any:
    policy = Policy.model_validate(policy_doc) if policy_doc else None
    output = {
        "status": "error",
        "data": None,
        "error": {"kind": kind, "code": code, "message": "", "retryable": False},
        "http": {"status": code if kind == "http" else None},
    }
    return decide_after_attempt(policy, output, attempt, {})


def patched_policy(version: PlaybookVersion, patch: list[dict[str, Any]]) -> dict[str, Any]:
    document = apply_patch(version.document, patch)
    parse_playbook(render(document))  # still a valid playbook
    policy: dict[str, Any] = document["workflow"][0]["tool"]["spec"]["policy"]
    return policy


def smallest_attempts(p: float, target: float) -> int:
    """The analytic answer: 1 - (1 - p)^(k - 1) >= target."""
    return 1 + math.ceil(math.log(1 - target) / math.log(1 - p) - 1e-12)


def test_the_rule_the_learner_writes_matches_exactly_its_classes() -> None:
    policy = {
        "rules": [
            {
                "when": retry_when(["http_503", "timeout", "KeyError"]),
                "then": {"do": "retry", "attempts": 3},
            }
        ]
    }
    assert decide(policy, "http", 503).action == "retry"
    assert decide(policy, "timeout", None).action == "retry"
    assert decide(policy, "python", "KeyError").action == "retry"
    assert decide(policy, "http", 502).action == "fail"
    assert decide(policy, "http", 401).action == "fail"
    assert decide(policy, "python", "ValueError").action == "fail"
    assert decide(policy, "connection", "08006").action == "fail"
    assert "output.error.code in [503]" in class_match(["http_503"])


def test_rounding_of_delays_to_one_two_three_five() -> None:
    assert [nice(v) for v in (0.09, 0.26, 1.0, 1.3, 1.5, 2.1, 4.2, 40)] == [
        0.1,
        0.3,
        1.0,
        1.0,
        2.0,
        2.0,
        5.0,
        50.0,
    ]


def test_503_recovering_on_retry_at_70_percent_gets_the_analytic_attempts() -> None:
    # Current policy: the dedicated 503 rule, 2 attempts, 0.5 s. Of 50 first-attempt
    # 503s, 35 recover on the retry: p = 0.7, so 1 - 0.3^(k-1) >= 0.99 needs k = 5.
    current = f"""\
    rules:
      - when: "{retry_when(["http_503"])}"
        then: {{do: retry, attempts: 2, delay: 0.5}}
    """
    version = version_of(http_step(policy=current))
    patterns = repeated((50, [None]), (35, ["http_503", None]), (15, ["http_503", "http_503"]))
    runs = sequential(patterns, delays=[0.5])
    drafts = retry_proposals(runs, version, CONFIG)
    assert len(drafts) == 1
    draft = drafts[0]
    expected = smallest_attempts(0.7, 0.99)
    assert expected == 5
    assert draft.kind == "retry" and draft.learner == "retry"
    assert draft.target.step == "call" and draft.target.version == 1
    then = draft.evidence["proposed_policy"]
    assert then["attempts"] == expected
    assert then["delay"] == 0.5  # the median recovery time
    assert "jitter" not in then  # one execution at a time
    success = draft.evidence["per_attempt_success"]
    assert success["rate"] == 0.7 and success["trials"] == 50 and success["recovered"] == 35
    assert success["low"] < 0.7 < success["high"]
    within = draft.evidence["p_success_within"]
    assert within["proposed"]["p"] == pytest.approx(1 - 0.3**4, abs=1e-4)
    assert within["current"]["p"] == pytest.approx(0.7, abs=1e-4)
    expected_effect = draft.evidence["expected"]
    # 50 of 100 runs hit a 503; 30% of those fail now, 0.3^4 of them afterwards.
    assert expected_effect["failures_avoided_per_100_runs"] == pytest.approx(
        100 * 0.5 * (0.3 - 0.3**4), abs=0.01
    )
    assert expected_effect["seconds_added_per_run"] > 0
    assert draft.evidence_size == 50  # the runs the 503 occurred in
    # The dedicated rule is replaced in place; the patched policy retries 503 five times.
    assert draft.patch == [
        {
            "op": "replace",
            "path": "/workflow/0/tool/spec/policy/rules/0",
            "value": {"when": retry_when(["http_503"]), "then": then},
        }
    ]
    policy = patched_policy(version, draft.patch)
    assert decide(policy, "http", 503).attempts == expected
    assert decide(policy, "http", 401).action == "fail"
    assert "503" in draft.rationale and "5 attempts" in draft.rationale


def cross_run_patterns() -> list[Sequence[str | None]]:
    # No retries: a failed run is judged by the next execution's run. Blocks "F S" (8)
    # and "F F S" (6): 20 failures, 14 followed by a success: p = 0.7.
    patterns = repeated(*[FAILED, SUCCEEDED] * 8)
    patterns += repeated(*[FAILED, FAILED, SUCCEEDED] * 6)
    return patterns + repeated((100 - len(patterns), [None]))


def test_without_retries_the_next_runs_estimate_the_recovery() -> None:
    version = version_of(http_step())
    runs = sequential(cross_run_patterns(), gap=1.0)
    drafts = retry_proposals(runs, version, CONFIG)
    assert len(drafts) == 1
    draft = drafts[0]
    assert draft.evidence["source"] == "next_run"
    success = draft.evidence["per_attempt_success"]
    assert (success["recovered"], success["trials"]) == (14, 20)
    then = draft.evidence["proposed_policy"]
    assert then["attempts"] == smallest_attempts(0.7, 0.99)
    # Recovery: 1 s to the next run (14 times), 2.1 s across a second failure (6 times).
    assert draft.evidence["recovery_s"]["p50"] == pytest.approx(1.0, abs=1e-6)
    assert draft.evidence["recovery_s"]["p95"] == pytest.approx(2.1, abs=1e-6)
    assert then["delay"] == 1.0 and then["max_delay"] == 2.0 and then["backoff"] == "exponential"
    assert draft.patch == [
        {
            "op": "add",
            "path": "/workflow/0/tool/spec/policy",
            "value": {"rules": [{"when": retry_when(["http_503"]), "then": then}]},
        }
    ]
    policy = patched_policy(version, draft.patch)
    decision = decide(policy, "http", 503)
    assert decision.action == "retry" and decision.delay == 1.0
    assert decide(policy, "http", 503, attempt=4).delay == 2.0  # capped by max_delay


def test_a_post_step_is_never_retried_unless_marked_idempotent() -> None:
    runs = sequential(cross_run_patterns())
    post = version_of(http_step("POST"))
    assert retry_proposals(runs, post, CONFIG) == []
    assert any("http POST" in reason for reason in explain_skips(runs, post, CONFIG))
    marked = version_of(http_step("POST", spec="{idempotent: true}"))
    assert [d.kind for d in retry_proposals(runs, marked, CONFIG)] == ["retry"]
    command = version_of(
        """\
        - step: call
          tool: {kind: postgres, command: "insert into t values (1)"}
        """
    )
    sql_runs = sequential(
        [["connection"] if p == ["http_503"] else p for p in cross_run_patterns()],
        kind="postgres",
    )
    assert retry_proposals(sql_runs, command, CONFIG) == []
    assert any("command" in reason for reason in explain_skips(sql_runs, command, CONFIG))


def test_a_401_that_never_recovers_is_taken_out_of_a_catch_all_retry() -> None:
    current = """\
    rules:
      - when: "{{ output.status == 'error' }}"
        then: {do: retry, attempts: 3, delay: 0.2}
    """
    version = version_of(http_step(policy=current))
    runs = sequential([["http_401"] * 3] * 12 + [[None]] * 20, delays=[0.2, 0.2])
    findings = retry_findings(runs, version, CONFIG)
    assert [(f.error_class, f.verdict) for f in findings] == [("http_401", "permanent")]
    drafts = retry_proposals(runs, version, CONFIG)
    assert [d.kind for d in drafts] == ["retry_remove"]
    draft = drafts[0]
    assert draft.patch[0]["op"] == "replace"
    assert draft.patch[0]["path"] == "/workflow/0/tool/spec/policy/rules/0"
    policy = patched_policy(version, draft.patch)
    assert decide(policy, "http", 401).action == "fail"  # no longer retried
    assert decide(policy, "http", 503).action == "retry"  # what the rule is for stays
    classes = draft.evidence["error_classes"]
    assert classes["http_401"]["counts"]["retries_observed"] == 24
    assert classes["http_401"]["recovery"]["recovered"] == 0
    assert draft.evidence["expected"]["seconds_added_per_run"] < 0
    assert "never recovered" in draft.rationale
    assert draft.evidence_size == 12


def test_a_rule_that_only_retries_a_permanent_error_is_removed() -> None:
    current = f"""\
    rules:
      - when: "{retry_when(["KeyError"])}"
        then: {{do: retry, attempts: 2}}
      - else: {{then: {{do: continue}}}}
    """
    step = textwrap.dedent(
        """\
        - step: call
          tool:
            kind: python
            code: "def main():\\n    return {}['k']"
            spec:
              policy:
        """
    )
    version = version_of(step + textwrap.indent(textwrap.dedent(current), " " * 8))
    runs = sequential([["KeyError", "KeyError"]] * 15, kind="python")
    drafts = retry_proposals(runs, version, CONFIG)
    assert [(d.kind, d.patch) for d in drafts] == [
        ("retry_remove", [{"op": "remove", "path": "/workflow/0/tool/spec/policy/rules/0"}])
    ]
    assert all(d.kind != "retry" for d in drafts)


def test_nothing_is_proposed_when_the_policy_already_fits() -> None:
    current = f"""\
    rules:
      - when: "{retry_when(["http_503"])}"
        then: {{do: retry, attempts: 5, backoff: exponential, delay: 1, max_delay: 2}}
    """
    version = version_of(http_step(policy=current))
    runs = sequential(cross_run_patterns())
    assert retry_proposals(runs, version, CONFIG) == []
    assert any("already" in reason for reason in explain_skips(runs, version, CONFIG))


def test_too_few_failures_propose_nothing() -> None:
    version = version_of(http_step())
    runs = sequential(repeated(*[FAILED, SUCCEEDED] * 4, (10, [None])))
    assert retry_proposals(runs, version, CONFIG) == []
    assert any("min_samples" in reason for reason in explain_skips(runs, version, CONFIG))


def test_jitter_when_executions_fail_together() -> None:
    # 20 executions at a time hit the same outage: their runs overlap and all recover on
    # the next attempt 0.3 s later.
    current = """\
    rules:
      - when: "{{ output.status == 'error' }}"
        then: {do: retry, attempts: 2, delay: 0.3}
    """
    version = version_of(http_step(policy=current))
    runs = []
    for wave in range(6):
        start = 1_000_000.0 + wave * 30
        for caller in range(5):
            runs.append(
                tool_run(
                    f"w{wave}c{caller}",
                    ["http_503", None],
                    start=start + caller * 0.01,
                    delays=[0.3],
                )
            )
            runs.append(tool_run(f"w{wave}s{caller}", [None], start=start + 10 + caller))
    drafts = [d for d in retry_proposals(runs, version, CONFIG) if d.kind == "retry"]
    assert len(drafts) == 1
    then = drafts[0].evidence["proposed_policy"]
    assert then["jitter"] is True
    assert then["attempts"] == 2  # every retry recovered
    assert then["delay"] == nice(2 * 0.3)  # full jitter waits half the delay on average
    overlap = drafts[0].evidence["concurrent_failures"]
    assert overlap["overlapping_share"] == 1.0 and overlap["max_executions"] == 5


def test_a_pipeline_member_gets_its_own_policy() -> None:
    version = version_of(
        """\
        - step: call
          tool:
            - {kind: noop, name: prepare}
            - {kind: http, name: fetch, url: "http://svc.test/thing"}
        """
    )
    runs = sequential(cross_run_patterns(), tool_index=1)
    (draft,) = retry_proposals(runs, version, CONFIG)
    assert draft.patch[0]["path"] == "/workflow/0/tool/1/spec/policy"
    document = apply_patch(version.document, draft.patch)
    parse_playbook(render(document))
    assert "spec" not in document["workflow"][0]["tool"][0]
    # Runs of a single-tool version of the step do not count for the pipeline member.
    assert retry_proposals(sequential(cross_run_patterns()), version, CONFIG) == []


def test_a_workbook_reference_keeps_what_it_inherits() -> None:
    version = version_of(
        """\
        - step: call
          tool: {kind: workbook, name: fetch}
        """,
        extra=(
            "workbook:\n"
            "  - name: fetch\n"
            "    tool: {kind: http, url: 'http://svc.test/thing', spec: {timeout: 5}}\n"
        ),
    )
    (draft,) = retry_proposals(sequential(cross_run_patterns()), version, CONFIG)
    assert draft.patch[0]["path"] == "/workflow/0/tool/spec"
    spec = draft.patch[0]["value"]
    assert spec["timeout"] == 5 and spec["policy"]["rules"][0]["when"] == retry_when(["http_503"])
    parse_playbook(render(apply_patch(version.document, draft.patch)))


def test_a_configuration_error_is_never_called_transient() -> None:
    # Even when later runs with the same input succeeded (the configuration was fixed
    # between them, say), an error that means nothing ran gets no retry.
    version = version_of(http_step())
    same = [
        dataclasses.replace(run, input_key="same")
        for run in sequential(repeated((12, ["validation"]), (1, [None])))
    ]
    alternating = [
        dataclasses.replace(run, input_key="same")
        for run in sequential([["validation"], [None]] * 12)
    ]
    for runs in (same, alternating):
        findings = retry_findings(runs, version, LearnerConfig(min_samples=5))
        (finding,) = [f for f in findings if f.error_class == "validation"]
        assert finding.draft is None and finding.verdict != "transient", finding.explain()
