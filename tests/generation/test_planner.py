"""The offline planner on descriptions it was not written against: each must become a
valid playbook whose dry run completes, with the structure the words ask for, and what
cannot be mapped must be reported, not invented."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from noetl_agent.generation import Constraints, Draft, generate


@dataclass(frozen=True)
class Case:
    description: str
    kinds: set[str]  # tool kinds that must appear
    loop: bool = False
    parallel_fan_out: bool = False
    conditional: bool = False  # some arc has a `when`
    retry: bool = False
    unmapped: tuple[str, ...] = ()  # words of parts that must be reported as not mapped


CASES = [
    Case(
        "Grab the latest exchange rates from https://rates.example.com/latest and keep "
        "only currencies with rate above 1.5",
        {"http", "python"},
    ),
    Case(
        "For every region in [north, south, east] call https://api.example.com/sales/{region}"
        " with at most 2 at a time, then sum the amount",
        {"http", "python"},
        loop=True,
    ),
    Case(
        "Hit https://a.example.com/health and https://b.example.com/health concurrently, "
        "combine the answers, then POST them to https://hooks.example.com/status",
        {"http", "noop"},
        parallel_fan_out=True,
    ),
    Case(
        "Read the customers table from postgres using credential crm. If there are more "
        "than 100 rows, ask an analyst to sign off",
        {"postgres", "approval"},
        conditional=True,
    ),
    Case(
        "Pull orders from https://shop.example.com/orders.json and retry up to 5 times "
        "with exponential backoff on transient errors, then store them in the "
        "analytics.orders table",
        {"http", "postgres"},
        retry=True,
    ),
    Case(
        "Load events.csv into the events table with duckdb, then run "
        "`SELECT kind, count(*) AS n FROM events GROUP BY kind` in duckdb",
        {"duckdb"},
    ),
    Case(
        "Download https://data.example.com/prices.json. Work out the average price. When "
        "it exceeds 50, notify https://hooks.example.com/expensive; otherwise send it "
        "to https://hooks.example.com/cheap",
        {"http", "python"},
        conditional=True,
    ),
    Case(
        "Trigger the playbook etl/nightly_load and afterwards have a manager approve the results",
        {"playbook", "approval"},
        conditional=True,
    ),
    Case(
        "Execute the shell script `./backup.sh` and then upload the result to "
        "https://backup.example.com/upload",
        {"shell", "http"},
    ),
    Case(
        "Fetch https://crm.example.com/contacts, deduplicate by email, and rank them by "
        "score descending, keeping the top 10",
        {"http", "python"},
    ),
    Case(
        "Every day at 7am fetch https://news.example.com/today and then bake a cake",
        {"http"},
        unmapped=("7am", "cake"),
    ),
    Case(
        "Query the sales table in postgres and send an email to the boss",
        {"postgres"},
        unmapped=("email",),
    ),
]


def _tools(document: dict[str, Any]) -> list[dict[str, Any]]:
    tools = []
    for step in document["workflow"]:
        tool = step["tool"]
        tools.extend(tool if isinstance(tool, list) else [tool])
    return tools


@pytest.mark.parametrize("case", CASES, ids=[c.description[:40] for c in CASES])
async def test_unseen_descriptions_become_runnable_playbooks(case: Case) -> None:
    draft: Draft = await generate(case.description, Constraints(examples=0))
    assert draft.generator == "offline"
    assert draft.valid, draft.issues
    assert draft.dry_run is not None and draft.dry_run.passed, draft.dry_run.to_dict()
    document = yaml.safe_load(draft.yaml)
    kinds = {tool["kind"] for tool in _tools(document)}
    assert case.kinds <= kinds, (kinds, draft.yaml)
    steps = document["workflow"]
    assert any("loop" in step for step in steps) == case.loop, draft.yaml
    inclusive = [
        s for s in steps if (s.get("next") or {}).get("spec", {}).get("mode") == "inclusive"
    ]
    assert bool(inclusive) == case.parallel_fan_out, draft.yaml
    arcs = [arc for s in steps for arc in (s.get("next") or {}).get("arcs", [])]
    assert any("when" in arc for arc in arcs) == case.conditional, draft.yaml
    retried = [t for t in _tools(document) if (t.get("spec") or {}).get("policy")]
    assert bool(retried) == case.retry, draft.yaml
    reported = " ".join(item.text for item in draft.plan.unmapped) if draft.plan else ""
    for word in case.unmapped:
        assert word in reported, (word, reported)
    if not case.unmapped:
        assert draft.plan is not None and draft.plan.unmapped == [], draft.plan.unmapped


async def test_the_loop_runs_once_per_listed_item_with_the_item_in_the_url() -> None:
    draft = await generate(
        "For each city in [Paris, Oslo, Lima] fetch https://weather.example.com/{city}",
        Constraints(examples=0),
    )
    document = yaml.safe_load(draft.yaml)
    assert document["workload"] == {"cities": ["Paris", "Oslo", "Lima"]}
    [fetch] = [s for s in document["workflow"] if "loop" in s]
    assert fetch["loop"]["in"] == "{{ cities }}"
    assert fetch["tool"]["url"] == "https://weather.example.com/{{ city }}"
    assert draft.dry_run is not None
    urls = [call.request["url"] for call in draft.dry_run.stood_in]
    assert urls == [f"https://weather.example.com/{c}" for c in ("Paris", "Oslo", "Lima")]


async def test_a_transformation_it_cannot_translate_is_reported() -> None:
    draft = await generate(
        "Fetch https://people.example.com/all and normalise the postal addresses",
        Constraints(examples=0),
    )
    assert draft.valid
    assert draft.plan is not None
    [unmapped] = draft.plan.unmapped
    assert "normalise" in unmapped.text and "not translated" in unmapped.reason


async def test_nothing_mappable_is_an_invalid_draft() -> None:
    draft = await generate("Sing a song about the sea", Constraints(examples=0))
    assert not draft.valid
    assert "nothing in the description" in draft.issues[0].message
    assert draft.dry_run is None


async def test_the_same_description_gives_the_same_playbook() -> None:
    text = "Fetch https://x.example.com/a, count the items and post them to https://y.example.com/b"
    first = await generate(text, Constraints(examples=0))
    second = await generate(text, Constraints(examples=0))
    assert first.yaml == second.yaml


async def test_without_the_embedding_model_patterns_are_matched_by_keywords() -> None:
    from collections.abc import Sequence

    from learning.errors import ModelUnavailable
    from noetl_agent.generation import Generator, OfflinePlanner
    from noetl_agent.generation.patterns import PatternMatcher

    class Missing:
        dimension = 384

        def embed(self, texts: Sequence[str]) -> list[list[float]]:
            raise ModelUnavailable("the model package is not installed")

    planner = OfflinePlanner(PatternMatcher(embedder=Missing()))
    draft = await Generator(planner=planner).generate(
        "Download https://shop.example.com/orders.json and count the orders",
        Constraints(examples=0),
    )
    assert draft.valid and draft.dry_run is not None and draft.dry_run.passed
    assert draft.plan is not None and draft.plan.method == "keywords"
    assert any("matched by keywords" in note for note in draft.notes)
    kinds = {s["tool"]["kind"] for s in yaml.safe_load(draft.yaml)["workflow"]}
    assert {"http", "python"} <= kinds
