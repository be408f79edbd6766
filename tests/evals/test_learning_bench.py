"""The learning benchmark runs end to end on a tiny log and tiny indexes, and writes its
section of RESULTS.md (the figures themselves come from `make bench`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.bench.learning import MARK_END, MARK_START, main

pytestmark = pytest.mark.slow


@pytest.mark.slow
def test_a_quick_run_reports_throughput_memory_and_latency(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "RESULTS.md"
    other = "<!-- engine:start -->\n## Engine\nfigures\n<!-- engine:end -->"
    results.write_text(f"# Benchmark and eval results\n\n{other}\n")
    argv = ["--quick", "--executions", "10", "--sizes", "300,150", "--queries", "5"]

    assert main([*argv, "--json", "--results", str(results)]) == 0

    report = json.loads(capsys.readouterr().out)
    indexing = report["indexing"]
    assert indexing["executions"] == 10
    assert indexing["events"] > 10 * 5
    assert indexing["texts"] > indexing["documents"] > 10
    assert len(indexing["indexer_s"]) == len(indexing["raw_s"]) == 1
    assert indexing["ratio"] > 0
    assert indexing["peak_rss_mb"] >= indexing["rss_model_mb"] > 0
    latency = report["latency"]
    assert [item["size"] for item in latency] == [150, 300]
    for item in latency:
        assert item["queries"] == 5
        assert item["p95_ms"] >= item["p50_ms"] > 0
        assert item["store_p50_ms"] > 0 and item["embed_p50_ms"] > 0
        assert item["similar_p95_ms"] >= item["similar_p50_ms"] > 0
        assert item["passed"] is None  # the goal is stated at 100k documents

    text = results.read_text()
    assert other in text
    assert text.count(MARK_START) == 1 and text.count(MARK_END) == 1
    section = text[text.index(MARK_START) :]
    assert "## Learning (indexing and search)" in section
    assert "| Indexing throughput ÷ raw `model.encode` | ≥ 85% |" in section
    assert "| 150 | 5 |" in section and "| 300 | 5 |" in section


def test_bad_sizes_are_refused_with_what_to_give(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--sizes", "10k"])
    assert "comma-separated whole numbers" in capsys.readouterr().err
