"""The explanation eval: its metrics, its results section, and a real run of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.explain import run
from evals.explain.run import TRUE_CAUSE, Rates
from evals.retrieval.raised import RAISED_FAMILIES as FAMILIES
from noetl_agent.explain_causes import BY_ID


def test_every_family_has_a_true_cause_the_explainer_knows() -> None:
    assert set(TRUE_CAUSE) == {family.name for family in FAMILIES}
    assert set(TRUE_CAUSE.values()) <= set(BY_ID)


def test_rates_count_first_and_top_three_matches() -> None:
    rates = Rates()
    rates.add(["input_shape", "bad_value"], "input_shape")
    rates.add(["dns", "service_down", "timeout"], "timeout")
    rates.add([], "dns")
    assert rates.summary() == {"failures": 3, "top1": 0.333, "top3": 0.667}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_explanations_find_the_true_cause_on_the_real_corpus(tmp_path: Path) -> None:
    report = run.run()

    assert report.executions == sum(len(family.variants) for family in FAMILIES)
    settings = report.settings
    assert settings["similar"]["top1"] >= settings["rules"]["top1"]
    assert settings["feedback"]["top1"] >= 0.9
    assert 0.0 < settings["history"]["top1"] <= 1.0
    results = tmp_path / "RESULTS.md"
    run.write_section(results, run.markdown(report), run.MARK_START, run.MARK_END)
    text = results.read_text()
    assert run.MARK_START in text and "feedback alone (rules off)" in text
