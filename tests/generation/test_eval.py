"""The generation eval: its corpus, its structure checks and pass rates, and a real run of
a few of its tasks against the local service."""

from __future__ import annotations

from evals.generation.corpus import TASKS, task
from evals.generation.run import Outcome, evaluate, rates, structure_problems
from evals.generation.service import local_service
from noetl_agent.generation import Generator


def test_the_corpus_has_forty_tasks_simple_first() -> None:
    assert len(TASKS) >= 40
    simple = [t for t in TASKS if t.simple]
    assert len(simple) == len(TASKS) // 2 and TASKS[: len(simple)] == simple
    assert len({t.text for t in TASKS}) == len(TASKS)
    assert sum(1 for t in TASKS if t.expect is not None) >= 20


def test_structure_checks_name_what_is_missing() -> None:
    wanted = task("x", "http python", "loop branch retry")
    document = {
        "workflow": [
            {"step": "start", "tool": {"kind": "http"}, "next": {"arcs": [{"step": "b"}]}},
            {"step": "b", "tool": {"kind": "noop"}, "loop": {"in": [1], "iterator": "i"}},
        ]
    }
    assert structure_problems(document, wanted) == ["no python step", "no branch", "no retry"]


def test_rates_split_the_halves() -> None:
    outcomes = [
        Outcome("a", True, True, True, True, True, 0.1),
        Outcome("b", True, True, True, True, False, 0.1),
        Outcome("c", False, True, True, False, None, 0.1),
        Outcome("d", False, False, False, False, None, 0.1),
    ]
    summary = rates(outcomes)
    assert (summary["passed"], summary["simple_passed"], summary["hard_passed"]) == (
        0.25,
        0.5,
        0.0,
    )
    assert (summary["live_runs"], summary["live_passed"]) == (2, 0.5)


async def test_tasks_run_live_against_the_local_service() -> None:
    runnable = [t for t in TASKS if t.expect is not None][:2]
    wrong = task(
        "Fetch {api}/items and count them",
        "http python",
        expect=lambda r: r["count"] == 999,  # wrong on purpose: the live check must fail
    )
    chosen = [*runnable, wrong]
    with local_service() as service:
        outcomes = [await evaluate(t, Generator(), service) for t in chosen]
    assert [o.passed for o in outcomes] == [True, True, False]
    assert outcomes[2].live is False and outcomes[2].valid and outcomes[2].dry_run
    assert any(request.startswith("GET /items") for request in service.requests)
