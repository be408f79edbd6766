"""Running the policy learners over the event log: drafts against each playbook's latest
catalog version.

``learn`` brings a ``PolicyHistory`` up to date (it keeps its position, so asking again
reads only what is new), takes for each playbook the latest catalog version and the runs
of the steps that version still has, and returns what the retry and hardware learners
propose. ``execution_runs`` gives the finished executions of one version, which the
effect measurement compares before and after a change.
"""

from __future__ import annotations

from collections.abc import Sequence

import yaml

from engine.dsl.loader import parse_playbook
from engine.errors import NotFound
from engine.ports import CatalogStore, EventStore
from learning.policy.hardware import hardware_proposals
from learning.policy.history import PolicyHistory
from learning.policy.model import ExecutionRun, LearnerConfig, PlaybookVersion, ProposalDraft
from learning.policy.retry import retry_proposals


async def playbook_version(
    catalog: CatalogStore, path: str, version: int | None = None
) -> PlaybookVersion:
    """The catalog version (latest when ``version`` is None) as the learners patch it;
    ``NotFound`` when the catalog has no such playbook or version."""
    entry = await catalog.get(path, version)
    document = yaml.safe_load(entry.content)
    return PlaybookVersion(
        path=entry.path,
        version=entry.version,
        content=entry.content,
        playbook=parse_playbook(entry.content, check=False),
        document=document,
    )


async def learn(
    events: EventStore,
    catalog: CatalogStore,
    *,
    playbook: str | None = None,
    config: LearnerConfig | None = None,
    history: PolicyHistory | None = None,
) -> list[ProposalDraft]:
    """Drafts for ``playbook`` (every playbook with runs when None) against its latest
    catalog version. A named playbook missing from the catalog raises ``NotFound``; one
    that only has runs (its catalog entry is gone) is skipped when scanning them all."""
    config = config or LearnerConfig()
    history = history or PolicyHistory(events, catalog)
    await history.refresh()
    paths: Sequence[str] = [playbook] if playbook is not None else history.playbooks()
    drafts: list[ProposalDraft] = []
    for path in paths:
        try:
            version = await playbook_version(catalog, path)
        except NotFound:
            if playbook is not None:
                raise
            continue
        steps = {step.step for step in version.playbook.workflow}
        runs = [run for run in history.tool_runs(path) if run.step in steps]
        loops = [loop for loop in history.loop_runs(path) if loop.step in steps]
        drafts += retry_proposals(runs, version, config)
        drafts += hardware_proposals(runs, loops, version, config)
    return drafts


async def execution_runs(
    events: EventStore,
    catalog: CatalogStore,
    playbook: str,
    version: int | None = None,
    *,
    history: PolicyHistory | None = None,
) -> list[ExecutionRun]:
    """The finished executions of ``playbook`` (of one ``version`` if given), oldest
    first, read up to now."""
    history = history or PolicyHistory(events, catalog)
    await history.refresh()
    return history.execution_runs(playbook, version)
