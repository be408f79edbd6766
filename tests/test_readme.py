"""Every playbook shown in the README validates and runs to completion."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.runtime.embedded import Engine

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = [
    block
    for block in re.findall(r"```yaml\n(.*?)```", README.read_text(), re.DOTALL)
    if block.startswith("apiVersion:")
]


def test_the_readme_shows_playbooks() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: re.search(r"name: (\w+)", b)[1])  # type: ignore[index]
async def test_readme_playbook_runs(engine: Engine, block: str) -> None:
    entry = await engine.register(block)
    outcome = await engine.run(entry.path)
    assert outcome.status == "completed", outcome.error


@pytest.mark.parametrize("example", sorted((README.parent / "examples").glob("*.yaml")))
async def test_examples_validate_and_run(engine: Engine, example: Path) -> None:
    entry = await engine.register(example.read_text(), source=str(example))
    outcome = await engine.run(entry.path)
    assert outcome.status in ("completed", "paused"), outcome.error
