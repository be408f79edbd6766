"""Generation and promotion as services of one stack (engine, catalog, event log).

The CLI and the HTTP API call these; they check the caller's role, build the generator
from the stack's parts and the environment (``NOETL_LLM_*``), register a valid draft on
request, and promote drafts by catalog version or by content.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.dsl.loader import parse_playbook
from engine.runtime.embedded import Engine
from learning.secrets_mask import ListableCredentials
from noetl_agent.generation.gate import DraftStatus, promote
from noetl_agent.generation.pipeline import Constraints, Draft, Generator
from noetl_agent.history import History
from noetl_agent.llm import LlmClient, LlmSettings
from noetl_agent.principals import Principal


async def generate_on(
    engine: Engine,
    description: str,
    constraints: Constraints | None = None,
    *,
    principal: Principal,
    register: bool = False,
    history: History | None = None,
    credentials: Sequence[ListableCredentials] = (),
    llm: LlmClient | None = None,
) -> Draft:
    """A draft for ``description`` made with ``engine``'s catalog and recorded in its
    event log; registered as the next catalog version when ``register`` and valid.
    ``Forbidden`` unless ``principal`` is an operator (agents may generate)."""
    principal.require("operator", "generate playbooks")
    client = llm or LlmClient(LlmSettings.from_environment(), redactor=engine.redactor)
    generator = Generator(
        llm=client,
        history=history,
        catalog=engine.catalog,
        events=engine.events,
        credentials=credentials,
        redactor=engine.redactor,
    )
    draft = await generator.generate(description, constraints)
    if register and draft.valid:
        entry = await engine.register(draft.yaml, source=None)
        draft.registered = {"path": entry.path, "version": entry.version}
    return draft


async def promote_version(
    engine: Engine,
    path: str,
    version: int | None,
    *,
    principal: Principal,
    comment: str | None = None,
) -> DraftStatus:
    """Promote the catalog version (latest when ``version`` is None) of a generated draft;
    ``Forbidden`` unless a human operator asks, ``NotFound`` when it is not a draft."""
    entry = await engine.catalog.get(path, version)
    playbook = parse_playbook(entry.content, source=entry.path)
    return await promote(engine.events, playbook, principal, comment)


async def promote_content(
    engine: Engine, content: str, *, principal: Principal, comment: str | None = None
) -> DraftStatus:
    """Promote the generated draft whose YAML is ``content`` (as written to a file)."""
    playbook = parse_playbook(content)
    return await promote(engine.events, playbook, principal, comment)
