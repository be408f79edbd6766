"""The distributed benchmark's arithmetic and its section of RESULTS.md (the benchmark
itself needs the services and a few minutes: `make bench`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.bench.distributed import MARK_END, MARK_START, Timings, percentile, write_results


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 95) == 7.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([float(n) for n in range(1, 101)], 95) == pytest.approx(95.05)


def test_step_timings_pair_each_step_run_with_its_tool_events() -> None:
    rows = [
        {"execution_id": "e1", "event_type": "step.started", "step_run_id": "a#1", "t": 10.0},
        {"execution_id": "e1", "event_type": "tool.started", "step_run_id": "a#1", "t": 10.004},
        {"execution_id": "e1", "event_type": "tool.processed", "step_run_id": "a#1", "t": 10.005},
        {"execution_id": "e1", "event_type": "step.started", "step_run_id": "b#1", "t": 10.005},
        {"execution_id": "e1", "event_type": "tool.started", "step_run_id": "b#1", "t": 10.011},
        # a step run of another execution with the same id, still waiting for a worker
        {"execution_id": "e2", "event_type": "step.started", "step_run_id": "a#1", "t": 10.0},
        {"execution_id": "e2", "event_type": "playbook.processed", "step_run_id": None, "t": 11},
    ]
    timings = Timings.from_rows(rows)
    assert timings.scheduling_ms == pytest.approx([4.0, 6.0])
    assert timings.tool_ms == pytest.approx([1.0])


def test_the_section_is_replaced_and_other_sections_are_kept(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    engine = "<!-- engine:start -->\n## Engine\nfigures\n<!-- engine:end -->"
    results.write_text(f"# Benchmark and eval results\n\n{engine}\n")
    write_results(results, f"{MARK_START}\nfirst\n{MARK_END}")
    write_results(results, f"{MARK_START}\nsecond\n{MARK_END}")
    text = results.read_text()
    assert engine in text
    assert "second" in text and "first" not in text
    assert text.count(MARK_START) == 1 and text.endswith(f"{MARK_END}\n")
