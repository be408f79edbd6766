"""The hardware learner on synthetic histories whose right answer is known."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import replace

import pytest
import yaml

from engine.dsl.loader import parse_playbook
from engine.dsl.models import Playbook, parse_duration
from learning.policy.hardware import format_timeout, hardware_proposals
from learning.policy.model import (
    Attempt,
    LearnerConfig,
    LoopRun,
    PlaybookVersion,
    ProposalDraft,
    ToolRun,
)
from learning.policy.patch import apply_patch, render

PATH = "tests/crunch"
PLAYBOOK = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: crunch, path: tests/crunch}
pools:
  - {name: cpu, cpu: 2, cost_per_hour: 1.0}
  - {name: large, cpu: 8, cost_per_hour: 3.0}
  - {name: gpu, gpu: 1, cost_per_hour: 10.0}
workflow:
  - step: start
    tool: {kind: noop}
    next: crunch
  - step: crunch
{crunch_spec}    tool: {kind: python, code: "result = sum(range(10 ** 7))"}
    next: fan
  - step: fan
    loop:
      in: "{{ workload.items }}"
      iterator: item
      spec: {mode: parallel, max_in_flight: 4}
    tool: {kind: http, url: "http://127.0.0.1:9/{{ item }}"}
    next: end
  - step: end
    tool: {kind: noop}
"""


def make_version(crunch_spec: str = "", version: int = 3) -> PlaybookVersion:
    spec = textwrap.indent(textwrap.dedent(crunch_spec), "    ") if crunch_spec else ""
    content = PLAYBOOK.replace("{crunch_spec}", spec)
    playbook = parse_playbook(content)
    return PlaybookVersion(
        path=playbook.path,
        version=version,
        content=content,
        playbook=playbook,
        document=yaml.safe_load(content),
    )


def jitter(i: int) -> float:
    """A deterministic spread in [0.9, 1.1)."""
    return 0.9 + ((i * 7) % 10) / 50.0


def runs_on(
    pool: str,
    base_s: float,
    n: int,
    *,
    step: str = "crunch",
    failures: int = 0,
    version: int = 3,
    path: str = PATH,
) -> list[ToolRun]:
    runs = []
    for i in range(n):
        ok = i >= failures
        duration = base_s * jitter(i)
        start = 1_000.0 + i * 100.0
        runs.append(
            ToolRun(
                execution_id=f"e-{pool}-{i}",
                playbook_path=path,
                playbook_version=version,
                step=step,
                step_run_id=f"{step}#1",
                tool_kind="python",
                pool=pool,
                attempts=(
                    Attempt(
                        number=1,
                        ok=ok,
                        error_class=None if ok else "RuntimeError",
                        ended_at=start + duration,
                    ),
                ),
                ok=ok,
                started_at=start,
                finished_at=start + duration,
                wall_ms=duration * 1000,
                cpu_ms=duration * 900,
                peak_rss_kb=200_000,
            )
        )
    return runs


def applied(version: PlaybookVersion, draft: ProposalDraft) -> Playbook:
    """The draft's patch applied to the version, rendered and parsed like a new version."""
    return parse_playbook(render(apply_patch(version.document, draft.patch)))


def of_kind(drafts: Sequence[ProposalDraft], kind: str) -> list[ProposalDraft]:
    return [draft for draft in drafts if draft.kind == kind]


# --- pools -----------------------------------------------------------------------------


def test_four_times_faster_at_three_times_the_price_moves_to_large() -> None:
    version = make_version()
    runs = runs_on("cpu", 8.0, 30) + runs_on("large", 2.0, 30)
    drafts = of_kind(hardware_proposals(runs, [], version, LearnerConfig()), "pool")
    assert len(drafts) == 1
    draft = drafts[0]
    assert draft.learner == "hardware"
    assert draft.target.to_dict() == {"playbook": PATH, "version": 3, "step": "crunch"}
    assert draft.patch == [
        {"op": "add", "path": "/workflow/1/spec", "value": {"runtime": {"pool": "large"}}}
    ]
    new = applied(version, draft)
    spec = new.step("crunch").spec
    assert spec is not None and spec.runtime is not None and spec.runtime.pool == "large"
    evidence = draft.evidence
    assert evidence["current_pool"] == "cpu" and evidence["proposed_pool"] == "large"
    pools = evidence["pools"]
    assert pools["cpu"]["n"] == 30 and pools["large"]["n"] == 30
    assert pools["large"]["cost_per_run"] == pytest.approx(pools["cpu"]["cost_per_run"] * 0.75)
    assert pools["large"]["p95_s"] < pools["cpu"]["p95_s"]
    assert pools["cpu"]["cpu_ms_mean"] > 0 and pools["cpu"]["peak_rss_kb_p95"] == 200_000
    expected = evidence["expected"]
    assert expected["seconds_per_run"] == pytest.approx(-6.0 * 1.0, rel=0.05)
    assert expected["cost_per_run"] == pytest.approx(-8.0 / 3600 * 0.25, rel=0.05)
    assert draft.evidence_size == 60
    assert any("gpu" in note for note in draft.notes)  # declared, never observed
    assert "large" in draft.rationale and "cheapest" in draft.rationale


def test_equally_fast_on_large_stays_on_the_cheaper_pool() -> None:
    version = make_version()
    runs = runs_on("cpu", 5.0, 30) + runs_on("large", 5.0, 30)
    assert of_kind(hardware_proposals(runs, [], version), "pool") == []


def test_twice_as_fast_at_three_times_the_price_stays_unless_latency_dominates() -> None:
    version = make_version()
    runs = runs_on("cpu", 6.0, 30) + runs_on("large", 3.0, 30) + runs_on("gpu", 2.5, 30)
    assert of_kind(hardware_proposals(runs, [], version), "pool") == []
    fastest = of_kind(
        hardware_proposals(runs, [], version, LearnerConfig(latency_weight=1.0)), "pool"
    )
    assert len(fastest) == 1
    assert fastest[0].evidence["proposed_pool"] == "gpu"
    assert fastest[0].evidence["expected"]["cost_per_run"] > 0  # faster, and dearer
    assert "fastest" in fastest[0].rationale


def test_an_explicit_latency_objective_the_current_pool_misses_moves_the_step() -> None:
    version = make_version()
    runs = runs_on("cpu", 6.0, 30) + runs_on("large", 3.0, 30) + runs_on("gpu", 2.5, 30)
    config = LearnerConfig(latency_objective_s=4.0)
    [draft] = of_kind(hardware_proposals(runs, [], version, config), "pool")
    assert draft.evidence["proposed_pool"] == "large"  # within 4 s and cheaper than gpu
    assert "objective" in draft.rationale


def test_a_cheaper_equally_fast_pool_replaces_the_configured_one() -> None:
    version = make_version("spec:\n  runtime: {pool: large}\n")
    runs = runs_on("cpu", 5.0, 20) + runs_on("large", 5.0, 20)
    [draft] = of_kind(hardware_proposals(runs, [], version), "pool")
    assert draft.patch == [
        {"op": "replace", "path": "/workflow/1/spec/runtime/pool", "value": "cpu"}
    ]
    spec = applied(version, draft).step("crunch").spec
    assert spec is not None and spec.runtime is not None and spec.runtime.pool == "cpu"


def test_too_few_samples_on_the_candidate_pool_proposes_nothing() -> None:
    version = make_version()
    runs = runs_on("cpu", 8.0, 30) + runs_on("large", 2.0, 5)
    assert of_kind(hardware_proposals(runs, [], version), "pool") == []
    enough = of_kind(hardware_proposals(runs, [], version, LearnerConfig(min_samples=5)), "pool")
    assert [draft.evidence["proposed_pool"] for draft in enough] == ["large"]


def test_a_pool_that_fails_more_often_is_not_proposed() -> None:
    version = make_version()
    runs = runs_on("cpu", 8.0, 30) + runs_on("large", 2.0, 30, failures=15)
    assert of_kind(hardware_proposals(runs, [], version), "pool") == []


def test_runs_of_other_playbooks_are_ignored() -> None:
    version = make_version()
    runs = runs_on("cpu", 8.0, 30) + runs_on("large", 2.0, 30, path="tests/other")
    assert of_kind(hardware_proposals(runs, [], version), "pool") == []
    assert hardware_proposals(runs_on("cpu", 8.0, 30, path="tests/other"), [], version) == []


def test_steps_without_work_of_their_own_are_left_alone() -> None:
    version = make_version()
    runs = runs_on("cpu", 8.0, 30, step="start") + runs_on("large", 2.0, 30, step="start")
    assert hardware_proposals(runs, [], version) == []


# --- timeouts --------------------------------------------------------------------------


def timed_runs(
    durations: Sequence[float], *, timeouts: int, timeout_s: float, version: int = 3
) -> list[ToolRun]:
    """Successful runs of ``durations`` on the cpu pool, the first ``timeouts`` of which
    needed a second attempt after the first one hit the timeout."""
    runs = []
    for i, duration in enumerate(durations):
        start = 5_000.0 + i * 1000.0
        if i < timeouts:
            first_end = start + timeout_s
            second_end = first_end + 1.0 + duration
            attempts: tuple[Attempt, ...] = (
                Attempt(number=1, ok=False, error_class="timeout", ended_at=first_end),
                Attempt(number=2, ok=True, ended_at=second_end, delay_before_s=1.0),
            )
            end = second_end
        else:
            attempts = (Attempt(number=1, ok=True, ended_at=start + duration),)
            end = start + duration
        runs.append(
            ToolRun(
                execution_id=f"t-{i}",
                playbook_path=PATH,
                playbook_version=version,
                step="crunch",
                step_run_id="crunch#1",
                tool_kind="python",
                pool="cpu",
                attempts=attempts,
                ok=True,
                started_at=start,
                finished_at=end,
            )
        )
    return runs


def test_timeouts_close_to_the_successful_p99_raise_the_timeout() -> None:
    version = make_version("spec: {timeout: 10s}\n")
    durations = [7.5 + 0.1 * i for i in range(20)]  # 7.5 .. 9.4 s
    runs = timed_runs(durations, timeouts=4, timeout_s=10.0)
    [draft] = of_kind(hardware_proposals(runs, [], version), "timeout")
    proposed = draft.evidence["proposed_timeout"]
    assert proposed == "15s"  # p99 9.38 s x 1.5 = 14.07 s, rounded up
    assert draft.patch == [{"op": "replace", "path": "/workflow/1/spec/timeout", "value": "15s"}]
    spec = applied(version, draft).step("crunch").spec
    assert spec is not None and spec.timeout is not None
    assert parse_duration(spec.timeout) == 15.0
    evidence = draft.evidence
    assert evidence["configured_timeout_s"] == 10.0
    assert evidence["timed_out_attempts"] == 4 and evidence["attempts"] == 24
    assert evidence["successful_attempts"]["n"] == 20
    assert evidence["successful_attempts"]["max"] == pytest.approx(9.4)
    assert evidence["priority"] == "normal"
    low, high = evidence["timeout_interval"]
    assert low < 4 / 24 < high
    assert "Raise the timeout" in draft.rationale and "10s" in draft.rationale


def test_timeouts_far_above_the_successful_durations_are_not_blamed_on_the_limit() -> None:
    version = make_version("spec: {timeout: 10s}\n")
    durations = [1.0 + 0.05 * i for i in range(20)]  # at most ~2 s: the timeouts are hangs
    runs = timed_runs(durations, timeouts=4, timeout_s=10.0)
    assert of_kind(hardware_proposals(runs, [], version), "timeout") == []


def test_no_timeouts_no_change_to_a_configured_timeout() -> None:
    version = make_version("spec: {timeout: 10s}\n")
    runs = timed_runs([8.0 + 0.05 * i for i in range(20)], timeouts=0, timeout_s=10.0)
    assert of_kind(hardware_proposals(runs, [], version), "timeout") == []


def hung_runs(
    seconds: Sequence[float], *, error_class: str = "ConnectionError", first: int = 100
) -> list[ToolRun]:
    """Runs on the cpu pool that ended with ``error_class`` after ``seconds`` each."""
    runs = []
    for i, duration in enumerate(seconds, start=first):
        start = 5_000.0 + i * 1000.0
        runs.append(
            ToolRun(
                execution_id=f"h-{i}",
                playbook_path=PATH,
                playbook_version=3,
                step="crunch",
                step_run_id="crunch#1",
                tool_kind="python",
                pool="cpu",
                attempts=(
                    Attempt(
                        number=1,
                        ok=False,
                        error_class=error_class,
                        retryable=False,
                        ended_at=start + duration,
                    ),
                ),
                ok=False,
                started_at=start,
                finished_at=start + duration,
            )
        )
    return runs


def test_a_step_whose_runs_end_in_their_usual_time_gets_no_timeout() -> None:
    version = make_version()
    durations = [2.0 + 0.1 * i for i in range(40)]
    steady = timed_runs(durations, timeouts=0, timeout_s=0)
    assert of_kind(hardware_proposals(steady, [], version), "timeout") == []
    # Failures within the usual duration are no reason either: a timeout would not stop them.
    quick_failures = hung_runs([1.0, 2.5, 3.0])
    assert of_kind(hardware_proposals(steady + quick_failures, [], version), "timeout") == []


def test_a_missing_timeout_is_added_when_runs_hung_with_enough_samples_only() -> None:
    version = make_version()
    durations = [2.0 + 0.1 * i for i in range(20)]  # 2.0 .. 3.9 s
    hung = hung_runs([120.0, 300.0]) + hung_runs([30.0], error_class="timeout", first=200)
    runs = timed_runs(durations, timeouts=0, timeout_s=0) + hung
    [draft] = of_kind(hardware_proposals(runs, [], version), "timeout")
    evidence = draft.evidence
    assert evidence["proposed_timeout"] == "6s"  # p99 3.88 s x 1.5 = 5.8 s
    assert evidence["reason"] == "overrun"
    assert evidence["overrun"]["runs"] == 3
    assert evidence["overrun"]["by_error_class"] == {"ConnectionError": 2, "timeout": 1}
    assert evidence["overrun"]["seconds_beyond_limit"] == pytest.approx(114 + 294 + 24)
    assert evidence["expected"]["seconds_per_run"] == pytest.approx(-(114 + 294 + 24) / 23)
    assert draft.patch == [{"op": "add", "path": "/workflow/1/spec", "value": {"timeout": "6s"}}]
    spec = applied(version, draft).step("crunch").spec
    assert spec is not None and spec.timeout == "6s"
    assert "ran longer than that without succeeding" in draft.rationale
    assert "2 failed with ConnectionError" in draft.rationale
    assert "1 timed out" in draft.rationale
    few = timed_runs(durations[:15], timeouts=0, timeout_s=0) + hung
    assert of_kind(hardware_proposals(few, [], version), "timeout") == []


def test_a_tool_timeout_at_or_below_the_limit_makes_a_step_timeout_useless() -> None:
    content = PLAYBOOK.replace("{crunch_spec}", "").replace(
        'code: "result = sum(range(10 ** 7))"', 'code: "result = 1", timeout: 5'
    )
    playbook = parse_playbook(content)
    version = PlaybookVersion(PATH, 3, content, playbook, yaml.safe_load(content))
    runs = timed_runs([2.0 + 0.1 * i for i in range(20)], timeouts=0, timeout_s=0)
    runs += hung_runs([5.0, 5.0], error_class="timeout")
    assert of_kind(hardware_proposals(runs, [], version), "timeout") == []


def test_a_proposed_timeout_is_never_below_the_slowest_success() -> None:
    version = make_version()
    durations = [1.0] * 30 + [9.0]  # one slow success beyond p99 x margin
    runs = timed_runs(durations, timeouts=0, timeout_s=0) + hung_runs([60.0])
    [draft] = of_kind(
        hardware_proposals(runs, [], version, LearnerConfig(timeout_margin=1.1)), "timeout"
    )
    assert draft.evidence["proposed_timeout_s"] >= 9.0


def test_a_proposed_timeout_is_never_below_the_floor() -> None:
    version = make_version()
    durations = [0.02 + 0.001 * i for i in range(30)]  # 20-49 ms: p99 x 1.5 is ~75 ms
    runs = timed_runs(durations, timeouts=0, timeout_s=0) + hung_runs([0.5, 4.0])
    [draft] = of_kind(hardware_proposals(runs, [], version), "timeout")
    assert draft.evidence["proposed_timeout"] == "1s"  # LearnerConfig.min_timeout_s
    assert draft.evidence["overrun"]["runs"] == 1  # the 0.5 s failure ends within 1 s


def pipeline_version(fetch: str = "", check: str = ", timeout: 5") -> PlaybookVersion:
    """The crunch step as a pipeline of two tools; ``fetch`` and ``check`` add keys to them."""
    content = PLAYBOOK.replace("{crunch_spec}", "").replace(
        '    tool: {kind: python, code: "result = sum(range(10 ** 7))"}\n',
        "    tool:\n"
        f'      - {{name: fetch, kind: python, code: "result = 1"{fetch}}}\n'
        f'      - {{name: check, kind: python, code: "result = 2"{check}}}\n',
    )
    playbook = parse_playbook(content)
    assert len(playbook.step("crunch").tools) == 2
    return PlaybookVersion(PATH, 3, content, playbook, yaml.safe_load(content))


def ended_by(tool: str, index: int, runs: Sequence[ToolRun]) -> list[ToolRun]:
    """``runs`` as a pipeline reports them: the attempts of the tool that ended it."""
    return [replace(run, tool=tool, tool_index=index) for run in runs]


def test_in_a_pipeline_a_tool_s_own_timeout_covers_that_tool_only() -> None:
    version = pipeline_version()  # fetch has no timeout, check has 5 s
    durations = [2.0 + 0.1 * i for i in range(20)]  # 2.0 .. 3.9 s
    steady = ended_by("check", 1, timed_runs(durations, timeouts=0, timeout_s=0))
    # fetch hung and failed; fetch took 25 s before check timed out; fetch took at least
    # 5 s before check failed: within what check's own timeout explains, so not counted.
    hung = ended_by("fetch", 0, hung_runs([120.0]))
    hung += ended_by("check", 1, hung_runs([30.0], error_class="timeout", first=200))
    hung += ended_by("check", 1, hung_runs([10.0], error_class="ValueError", first=300))
    [draft] = of_kind(hardware_proposals(steady + hung, [], version), "timeout")
    evidence = draft.evidence
    assert evidence["proposed_timeout"] == "6s"  # p99 3.88 s x 1.5 = 5.8 s
    assert evidence["reason"] == "overrun"
    assert evidence["overrun"]["runs"] == 2
    assert evidence["overrun"]["by_error_class"] == {"ConnectionError": 1, "timeout": 1}
    # 120 - 6 in fetch alone; 30 - 5 (check at most its own timeout) - 6 in fetch.
    assert evidence["overrun"]["seconds_beyond_limit"] == pytest.approx(114 + 19)
    assert evidence["overrun"]["longest_s"] == pytest.approx(120)
    assert evidence["tools"] == [
        {"tool": "fetch", "own_timeout_s": None, "stops_itself": False},
        {"tool": "check", "own_timeout_s": 5.0, "stops_itself": True},
    ]
    assert draft.patch == [{"op": "add", "path": "/workflow/1/spec", "value": {"timeout": "6s"}}]
    assert "at least 66.5s sooner on average" in draft.rationale
    assert "'check' (5s) stops at its own timeout, which covers that tool only" in (draft.rationale)
    assert "'fetch' has no own timeout at or below the limit" in draft.rationale


def test_a_pipeline_whose_every_tool_stops_itself_gets_no_step_timeout() -> None:
    # The step timeout limits each tool's attempts, not their sum: a pipeline of tools
    # that each stop at 5 s is stopped no sooner by a 6 s step timeout, however long the
    # pipeline as a whole ran.
    version = pipeline_version(fetch=", timeout: 5")
    durations = [2.0 + 0.1 * i for i in range(20)]
    steady = ended_by("check", 1, timed_runs(durations, timeouts=0, timeout_s=0))
    hung = ended_by("fetch", 0, hung_runs([5.0], error_class="timeout"))
    hung += ended_by("check", 1, hung_runs([10.0], error_class="timeout", first=200))
    assert of_kind(hardware_proposals(steady + hung, [], version), "timeout") == []


def test_several_tools_without_a_timeout_count_beyond_one_limit_each() -> None:
    version = pipeline_version(check="")  # neither tool has a timeout
    durations = [2.0 + 0.1 * i for i in range(20)]
    steady = ended_by("check", 1, timed_runs(durations, timeouts=0, timeout_s=0))
    # 10 s over two tools may be 5 s in each, which a 6 s limit stops in neither.
    within = ended_by("check", 1, hung_runs([10.0]))
    assert of_kind(hardware_proposals(steady + within, [], version), "timeout") == []
    beyond = ended_by("check", 1, hung_runs([20.0], first=200))
    [draft] = of_kind(hardware_proposals(steady + within + beyond, [], version), "timeout")
    assert draft.evidence["overrun"]["attempts"] == 1
    assert draft.evidence["overrun"]["seconds_beyond_limit"] == pytest.approx(20 - 2 * 6)
    assert "'fetch', 'check' have no own timeouts at or below the limit" in draft.rationale


def test_runs_of_another_pipeline_are_not_blamed_on_this_one() -> None:
    version = pipeline_version()
    durations = [2.0 + 0.1 * i for i in range(20)]
    steady = ended_by("check", 1, timed_runs(durations, timeouts=0, timeout_s=0))
    other = ended_by("parse", 1, hung_runs([120.0])) + ended_by("load", 2, hung_runs([90.0]))
    assert of_kind(hardware_proposals(steady + other, [], version), "timeout") == []
    ours = ended_by("fetch", 0, hung_runs([120.0], first=300))
    [draft] = of_kind(hardware_proposals(steady + other + ours, [], version), "timeout")
    assert draft.evidence["overrun"]["runs"] == 1


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.33, "350ms"), (0.999, "1s"), (11.2, "12s"), (12.0, "12s"), (185.0, "4m"), (9000, "3h")],
)
def test_format_timeout_rounds_up_to_a_readable_duration(seconds: float, text: str) -> None:
    formatted, value = format_timeout(seconds)
    assert formatted == text
    assert parse_duration(formatted) == pytest.approx(value)
    assert value >= seconds


# --- loops -----------------------------------------------------------------------------


def loop_runs(speedup: float, *, n: int = 8, iterations: int = 24, limit: int = 4) -> list[LoopRun]:
    runs = []
    for i in range(n):
        busy = iterations * 1.0 * jitter(i)
        runs.append(
            LoopRun(
                execution_id=f"l-{i}",
                playbook_path=PATH,
                playbook_version=3,
                step="fan",
                iterations=iterations,
                max_in_flight=limit,
                wall_s=busy / (speedup * jitter(i + 3)),
                busy_s=busy,
            )
        )
    return runs


def test_linear_speed_up_raises_max_in_flight() -> None:
    version = make_version()
    [draft] = of_kind(hardware_proposals([], loop_runs(3.9), version), "max_in_flight")
    assert draft.patch == [
        {"op": "replace", "path": "/workflow/2/loop/spec/max_in_flight", "value": 8}
    ]
    loop = applied(version, draft).step("fan").loop
    assert loop is not None and loop.spec.max_in_flight == 8 and loop.spec.mode == "parallel"
    evidence = draft.evidence
    assert evidence["configured_max_in_flight"] == 4
    assert evidence["binding_efficiency_p50"] >= 0.8
    assert evidence["expected"]["seconds_per_run"] < 0
    assert "Raise max_in_flight" in draft.rationale


def test_raising_is_capped_by_the_typical_iteration_count() -> None:
    version = make_version()
    drafts = hardware_proposals([], loop_runs(3.9, iterations=6), version)
    [draft] = of_kind(drafts, "max_in_flight")
    assert draft.evidence["proposed_max_in_flight"] == 6


def test_saturated_loop_lowers_max_in_flight() -> None:
    version = make_version()
    [draft] = of_kind(hardware_proposals([], loop_runs(1.2), version), "max_in_flight")
    proposed = draft.evidence["proposed_max_in_flight"]
    assert proposed == 3  # ceil(p90 speed-up ~1.3) + 1
    loop = applied(version, draft).step("fan").loop
    assert loop is not None and loop.spec.max_in_flight == 3
    assert draft.evidence["expected"]["slots_freed"] == 1
    assert "Lower max_in_flight" in draft.rationale


def test_partial_scaling_and_other_limits_propose_nothing() -> None:
    version = make_version()
    assert hardware_proposals([], loop_runs(2.6), version) == []  # 65% efficient
    other_limit = loop_runs(3.9, limit=2)  # ran under another configuration
    assert hardware_proposals([], other_limit, version) == []
    too_few = loop_runs(3.9, n=3)
    assert hardware_proposals([], too_few, version) == []


def test_every_patch_yields_a_valid_playbook() -> None:
    version = make_version()
    runs = runs_on("cpu", 8.0, 30) + runs_on("large", 2.0, 30) + hung_runs([600.0])
    drafts = hardware_proposals(runs, loop_runs(3.9), version)
    assert {draft.kind for draft in drafts} == {"pool", "timeout", "max_in_flight"}
    for draft in drafts:
        applied(version, draft)
    assert len({draft.fingerprint for draft in drafts}) == len(drafts)


def test_an_unlimited_saturated_loop_gets_a_limit() -> None:
    content = make_version().content.replace(", max_in_flight: 4", "")
    playbook = parse_playbook(content)
    version = PlaybookVersion(
        path=playbook.path,
        version=3,
        content=content,
        playbook=playbook,
        document=yaml.safe_load(content),
    )
    unlimited = [
        LoopRun(
            execution_id=run.execution_id,
            playbook_path=run.playbook_path,
            playbook_version=run.playbook_version,
            step=run.step,
            iterations=run.iterations,
            max_in_flight=None,
            wall_s=run.wall_s,
            busy_s=run.busy_s,
        )
        for run in loop_runs(1.2, iterations=24)
    ]
    [draft] = of_kind(hardware_proposals([], unlimited, version), "max_in_flight")
    assert draft.patch == [{"op": "add", "path": "/workflow/2/loop/spec/max_in_flight", "value": 3}]
    loop = applied(version, draft).step("fan").loop
    assert loop is not None and loop.spec.max_in_flight == 3
    assert "unlimited" in draft.rationale
