"""The evidence of a failed parallel loop names the iteration that failed it, not one of
the iterations its failure cut short."""

from __future__ import annotations

import textwrap

from engine.core import events as ev
from engine.dsl.loader import parse_playbook
from engine.runtime.embedded import Engine
from noetl_agent.explain_evidence import Masker, failed_step

LOOP = textwrap.dedent(
    """\
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: loop_fails}
    workload: {items: [1, 2, 3]}
    workflow:
      - step: start
        loop: {in: "{{ items }}", iterator: x, spec: {mode: parallel, max_in_flight: 3}}
        tool:
          kind: python
          code: |
            import time
            def main(x):
                if x == 2:
                    raise KeyError('missing')
                time.sleep(1.0)
                return x
        input: {x: "{{ x }}"}
    """
)


async def test_a_failed_parallel_loop_points_at_the_failing_iteration(engine: Engine) -> None:
    entry = await engine.register(LOOP)
    outcome = await engine.run(entry.path)
    assert outcome.status == "failed"
    events = await engine.events.read(outcome.execution_id)
    cut_short = [
        e
        for e in events
        if e.event_type == ev.LOOP_ITERATION_FINISHED and e.status == ev.STATUS_CANCELLED
    ]
    assert cut_short, "the other iterations were still running when iteration 1 failed"

    evidence = failed_step(events, parse_playbook(LOOP), Masker())

    assert evidence is not None
    assert (evidence.step, evidence.iteration) == ("start", 1)
    assert evidence.error.code == "KeyError"
