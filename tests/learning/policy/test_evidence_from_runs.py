"""What the learners need to see in real runs before they propose: a timeout only for a
step whose runs overran, a retry of a Python exception only when it went away with the
same input (or is a network failure by nature), never for one the same input always
raises."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from engine.runtime.embedded import Engine
from learning.policy.history import PolicyHistory
from learning.policy.learners import learn, playbook_version
from learning.policy.model import LearnerConfig, ProposalDraft
from learning.policy.patch import apply_patch, render
from learning.policy.retry import retry_findings, retry_when

CONFIG = LearnerConfig(min_samples=5, min_timeout_s=0.1)


def python_playbook(name: str, code: str, inputs: dict[str, str], tool_extra: str = "") -> str:
    """A one-step playbook whose python tool runs ``code`` with ``inputs`` (workload keys
    and their defaults); ``tool_extra`` adds keys to the tool (``"timeout: 2"``)."""
    workload = ", ".join(f"{key}: {value}" for key, value in inputs.items())
    lines = [
        "apiVersion: noetl.io/v2",
        "kind: Playbook",
        f"metadata: {{name: {name}}}",
        f"workload: {{{workload}}}",
        "workflow:",
        "  - step: work",
        "    tool:",
        "      kind: python",
    ]
    if tool_extra:
        lines.append(f"      {tool_extra}")
    lines.append("      code: |")
    lines += [f"        {line}" if line else "" for line in code.splitlines()]
    lines.append("      input:")
    lines += [f"        {key}: '{{{{ {key} }}}}'" for key in inputs]
    return "\n".join(lines) + "\n"


async def run_all(
    engine: Engine, path: str, workloads: Sequence[Mapping[str, object]]
) -> list[str]:
    return [(await engine.run(path, workload=dict(workload))).status for workload in workloads]


def of(drafts: list[ProposalDraft], playbook: str, kind: str) -> list[ProposalDraft]:
    return [d for d in drafts if d.target.playbook == playbook and d.kind == kind]


async def apply(engine: Engine, draft: ProposalDraft) -> None:
    version = await playbook_version(engine.catalog, draft.target.playbook, draft.target.version)
    await engine.register(render(apply_patch(version.document, draft.patch)))


# --- timeouts --------------------------------------------------------------------------

STALLING = """\
import time

def main(mode):
    if mode == "hang":
        time.sleep(30)  # stopped by the tool's own 2 s timeout
    if mode == "stall":
        time.sleep(1.5)
        raise ConnectionError("the peer went away after a long wait")
    return {"mode": mode}
"""


async def test_only_a_step_whose_runs_overran_gets_a_timeout(engine: Engine) -> None:
    steady = await engine.register(
        python_playbook("steady", STALLING, {"mode": "fast"}, "timeout: 2")
    )
    stalling = await engine.register(
        python_playbook("stalling", STALLING, {"mode": "fast"}, "timeout: 2")
    )
    fast = [{"mode": "fast"}] * 12
    assert set(await run_all(engine, steady.path, fast)) == {"completed"}
    overran = [*fast[:6], {"mode": "hang"}, *fast[6:], {"mode": "stall"}]
    statuses = await run_all(engine, stalling.path, overran)
    assert statuses.count("failed") == 2

    drafts = await learn(engine.events, engine.catalog, config=CONFIG)
    # Every run of `steady` ended in its usual time: nothing to stop, nothing proposed.
    assert of(drafts, "steady", "timeout") == []

    (draft,) = of(drafts, "stalling", "timeout")
    evidence = draft.evidence
    assert evidence["reason"] == "overrun"
    assert evidence["overrun"]["runs"] == 2
    assert evidence["overrun"]["by_error_class"] == {"ConnectionError": 1, "timeout": 1}
    assert evidence["proposed_timeout_s"] < 1.5  # below the stall, above every success
    assert evidence["proposed_timeout_s"] >= evidence["successful_attempts"]["max"]
    assert evidence["expected"]["seconds_per_run"] < 0
    assert "1 failed with ConnectionError" in draft.rationale
    assert "1 timed out" in draft.rationale
    assert draft.patch == [
        {
            "op": "add",
            "path": "/workflow/0/spec",
            "value": {"timeout": evidence["proposed_timeout"]},
        }
    ]


async def test_a_tool_timeout_already_at_the_limit_gets_no_step_timeout(engine: Engine) -> None:
    entry = await engine.register(
        python_playbook("guarded", STALLING, {"mode": "fast"}, "timeout: 0.1")
    )
    workloads = [{"mode": "fast"}] * 12 + [{"mode": "hang"}, {"mode": "hang"}]
    await run_all(engine, entry.path, workloads)
    drafts = await learn(engine.events, engine.catalog, config=CONFIG)
    assert of(drafts, "guarded", "timeout") == []


def pipeline_playbook(name: str, fetch_extra: str = "") -> str:
    """A one-step playbook whose step is a pipeline: ``fetch`` (with ``fetch_extra`` keys,
    none by default) passes its answer to ``check``, which has a 1 s timeout of its own.
    By ``mode``: ``stall`` fails in fetch after 3 s, ``slow`` answers after 3 s and fails
    in check, ``hang`` sleeps in fetch, ``late`` answers after 0.9 s and sleeps in check."""
    return f"""\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {{name: {name}}}
workload: {{mode: fast}}
workflow:
  - step: work
    tool:
      - name: fetch
        kind: python{fetch_extra}
        input: {{mode: "{{{{ mode }}}}"}}
        code: |
          import time

          def main(mode):
              if mode == "hang":
                  time.sleep(30)
              if mode in ("stall", "slow"):
                  time.sleep(3)
              if mode == "late":
                  time.sleep(0.9)
              if mode == "stall":
                  raise ConnectionError("the peer went away after a long wait")
              return {{"mode": mode}}
      - name: check
        kind: python
        timeout: 1
        code: |
          import time

          def main(_prev):
              if _prev["mode"] == "slow":
                  raise ValueError("the answer came too late to be used")
              if _prev["mode"] == "late":
                  time.sleep(30)
              return _prev
"""


# A floor of 1 s: the proposed limit is at least check's own timeout, which stops check.
PIPELINE_CONFIG = LearnerConfig(min_samples=5, min_timeout_s=1.0)


async def test_a_pipeline_tool_without_a_timeout_of_its_own_gets_a_step_timeout(
    engine: Engine,
) -> None:
    entry = await engine.register(pipeline_playbook("fetch-check"))
    fast = [{"mode": "fast"}] * 12
    statuses = await run_all(engine, entry.path, [*fast[:6], {"mode": "stall"}, *fast[6:]])
    assert statuses.count("failed") == 1
    assert await run_all(engine, entry.path, [{"mode": "slow"}]) == ["failed"]

    drafts = await learn(engine.events, engine.catalog, config=PIPELINE_CONFIG)
    (draft,) = of(drafts, "fetch-check", "timeout")
    evidence = draft.evidence
    assert evidence["reason"] == "overrun"
    assert evidence["tools"] == [
        {"tool": "fetch", "own_timeout_s": None, "stops_itself": False},
        {"tool": "check", "own_timeout_s": 1.0, "stops_itself": True},
    ]
    assert 1.0 <= evidence["proposed_timeout_s"] < 2.0
    # Both runs spent 3 s in fetch, which has no timeout: the one fetch ended and the one
    # check ended (after at most its own 1 s) are counted alike.
    assert evidence["overrun"]["runs"] == 2
    assert evidence["overrun"]["by_error_class"] == {"ConnectionError": 1, "ValueError": 1}
    assert evidence["overrun"]["longest_s"] >= 3.0
    assert "'fetch' has no own timeout at or below the limit" in draft.rationale
    assert "'check' (1s) stops at its own timeout, which covers that tool only" in (draft.rationale)

    # The proposal applied, fetch is stopped at the limit: a stall now fails sooner.
    await apply(engine, draft)
    started = time.monotonic()
    assert await run_all(engine, entry.path, [{"mode": "stall"}]) == ["failed"]
    assert time.monotonic() - started < 3.0


async def test_a_pipeline_whose_every_tool_stops_itself_gets_no_step_timeout(
    engine: Engine,
) -> None:
    entry = await engine.register(pipeline_playbook("guarded-pipeline", "\n        timeout: 1"))
    workloads = [{"mode": "fast"}] * 12 + [{"mode": "hang"}, {"mode": "late"}]
    statuses = await run_all(engine, entry.path, workloads)
    assert statuses.count("failed") == 2
    # The late run took about 1.9 s in all, longer than the limit, but a step timeout
    # limits each tool on its own and each of these stops itself at 1 s already.
    drafts = await learn(engine.events, engine.catalog, config=PIPELINE_CONFIG)
    assert of(drafts, "guarded-pipeline", "timeout") == []


# --- retries of python exceptions --------------------------------------------------------

FLAKY_PEER = """\
from pathlib import Path

def main(counter):
    path = Path(counter)
    calls = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(calls))
    if calls % 2:
        raise ConnectionError(f"the peer reset the connection (call {calls})")
    return {"calls": calls}
"""
BUSY = FLAKY_PEER.replace("ConnectionError", "RuntimeError").replace(
    "the peer reset the connection", "the lock is busy"
)
LOOKUP = """\
def main(key):
    return {"value": {"good": 1, "fine": 2}[key]}
"""
DIVIDE = """\
def main(n):
    return {"share": 10 / int(n)}
"""
REFUSED = """\
def main(port):
    if int(port) == 1:
        raise ConnectionRefusedError(f"nothing listens on port {port}")
    return {"port": port}
"""
TIMEOUTS = """\
def main(n):
    if int(n) % 2:
        raise TimeoutError(f"the service did not answer request {n} in time")
    return {"n": n}
"""


def retry_of(drafts: list[ProposalDraft], playbook: str) -> list[ProposalDraft]:
    return [d for d in drafts if d.target.playbook == playbook and d.learner == "retry"]


async def test_a_flaky_python_step_gets_a_retry_from_runs_with_the_same_input(
    engine: Engine, tmp_path: Path
) -> None:
    peer = await engine.register(python_playbook("peer", FLAKY_PEER, {"counter": "''"}))
    busy = await engine.register(python_playbook("busy", BUSY, {"counter": "''"}))
    same_peer = [{"counter": str(tmp_path / "peer")}] * 12
    same_busy = [{"counter": str(tmp_path / "busy")}] * 12
    assert (await run_all(engine, peer.path, same_peer)).count("failed") == 6
    assert (await run_all(engine, busy.path, same_busy)).count("failed") == 6

    drafts = await learn(engine.events, engine.catalog, config=CONFIG)
    for name, error in (("peer", "ConnectionError"), ("busy", "RuntimeError")):
        (draft,) = retry_of(drafts, name)
        assert draft.kind == "retry"
        assert draft.evidence["error_class"] == error
        assert draft.evidence["source"] == "same_input"
        assert draft.evidence["tool_said_retryable"] is False
        counts = draft.evidence["counts"]
        assert counts["same_input_runs_observed"] == 6
        assert counts["recovered_with_same_input"] == 6
        rule = draft.patch[0]["value"]["rules"][0]
        assert rule["when"] == retry_when([error])
        assert rule["then"]["attempts"] == 2
        assert "runs with the same input failed and then succeeded" in draft.rationale

    # Applied, the step's failures are retried into successes.
    (peer_retry,) = retry_of(drafts, "peer")
    await apply(engine, peer_retry)
    assert set(await run_all(engine, peer.path, same_peer[:6])) == {"completed"}


async def test_errors_the_same_input_always_raises_never_get_a_retry(engine: Engine) -> None:
    lookup = await engine.register(python_playbook("lookup", LOOKUP, {"key": "good"}))
    divide = await engine.register(python_playbook("divide", DIVIDE, {"n": "1"}))
    refused = await engine.register(python_playbook("refused", REFUSED, {"port": "80"}))
    # Good and bad inputs alternate: every failure is followed by a success of the next
    # run, but each bad input fails every time it comes back.
    keys = [{"key": k} for k in ("good", "missing", "fine", "absent") * 4]
    numbers = [{"n": n} for n in ("1", "0", "2", "0") * 4]
    ports = [{"port": p} for p in ("80", "1", "443", "1") * 4]
    assert (await run_all(engine, lookup.path, keys)).count("failed") == 8
    assert (await run_all(engine, divide.path, numbers)).count("failed") == 8
    assert (await run_all(engine, refused.path, ports)).count("failed") == 8

    history = PolicyHistory(engine.events, engine.catalog)
    drafts = await learn(engine.events, engine.catalog, config=CONFIG, history=history)
    for name in ("lookup", "divide", "refused"):
        assert retry_of(drafts, name) == [], name

    # The learner says why: the same input failed again every time it came back.
    for name, error in (
        ("lookup", "KeyError"),
        ("divide", "ZeroDivisionError"),
        ("refused", "ConnectionRefusedError"),
    ):
        version = await playbook_version(engine.catalog, name)
        runs = history.tool_runs(name)
        assert {run.input_key for run in runs if not run.ok}.isdisjoint(
            {run.input_key for run in runs if run.ok}
        )
        (finding,) = [f for f in retry_findings(runs, version, CONFIG) if f.error_class == error]
        assert finding.verdict == "permanent", finding.explain()
        assert finding.draft is None


async def test_a_network_error_with_other_inputs_each_time_is_judged_on_the_next_runs(
    engine: Engine,
) -> None:
    entry = await engine.register(python_playbook("answers", TIMEOUTS, {"n": "0"}))
    # Every run has its own input, so no run repeats one: the exception type decides.
    assert (await run_all(engine, entry.path, [{"n": str(i)} for i in range(12)])).count(
        "failed"
    ) == 6
    drafts = await learn(engine.events, engine.catalog, config=CONFIG)
    (draft,) = retry_of(drafts, "answers")
    assert draft.evidence["error_class"] == "TimeoutError"
    assert draft.evidence["source"] == "next_run"
    assert "network or peer failure by nature" in draft.rationale

    # A non-network exception with the same history stays undecided: no proof either way.
    other = await engine.register(
        python_playbook("answers2", TIMEOUTS.replace("TimeoutError", "LookupError"), {"n": "0"})
    )
    await run_all(engine, other.path, [{"n": str(i)} for i in range(12)])
    history = PolicyHistory(engine.events, engine.catalog)
    await history.refresh()
    assert retry_of(await learn(engine.events, engine.catalog, config=CONFIG), "answers2") == []
    version = await playbook_version(engine.catalog, "answers2")
    (finding,) = retry_findings(history.tool_runs("answers2"), version, CONFIG)
    assert finding.verdict == "undecided" and "other inputs" in finding.reason
