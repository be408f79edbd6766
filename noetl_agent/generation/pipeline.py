"""Generation: a description in words → a validated, dry-run playbook draft.

:meth:`Generator.generate` (and :func:`generate`, its one-call form)

1. retrieves the catalog playbooks most similar to the description from the learning
   layer's index (when there is one; generation works without);
2. with a model configured, asks it for YAML against the JSON Schema and the tool
   catalog, validates the answer (``parse_playbook`` plus the constraints) and feeds every
   problem back for repair, then dry-runs the valid draft and feeds a failing dry run back
   too, for at most ``max_repairs`` rounds in all; without a model, or when the model
   fails or never produces a valid draft, the offline planner writes the draft;
3. returns a :class:`Draft`: the YAML, its issues, the dry-run report, the examples used,
   what the planner could not map, every model call with its tokens and cost, and the
   gate's verdict (code-executing tools make the draft wait for a human's promotion).

With an event store every model call is recorded as ``llm.called`` (log
``generation:<id>``) and every valid draft as ``playbook.generated`` (log
``draft:<fingerprint>``, which the gate reads).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.dsl.loader import parse_playbook
from engine.dsl.models import TOOL_KINDS, Playbook
from engine.errors import Issue, NoetlError, NotFound, PlaybookInvalid
from engine.ports import CatalogStore, EventStore
from engine.runtime.redaction import Redactor
from learning.errors import LearningError
from learning.offload import offload
from learning.secrets_mask import ListableCredentials, learn_credentials
from noetl_agent.generation import prompts
from noetl_agent.generation.dryrun import DryRunReport, dry_run
from noetl_agent.generation.errors import InvalidRequest
from noetl_agent.generation.gate import code_tools, fingerprint, generated_event
from noetl_agent.generation.planner import OfflinePlanner, Plan
from noetl_agent.generation.prompts import Example
from noetl_agent.history import History
from noetl_agent.llm import (
    LlmCall,
    LlmCallFailed,
    LlmClient,
    LlmError,
    Message,
    record_in,
    total_cost,
)

MAX_DESCRIPTION = 10_000
MAX_REPAIRS = 5


@dataclass(frozen=True, slots=True)
class Constraints:
    """What the caller asks of the draft besides the description."""

    name: str | None = None  # metadata.name
    path: str | None = None  # catalog path
    kinds: frozenset[str] | None = None  # the only tool kinds allowed
    workload: dict[str, Any] = field(default_factory=dict)  # inputs for the dry run
    fixtures: dict[str, Any] = field(default_factory=dict)  # step → output in the dry run
    max_repairs: int = 2  # model repair rounds
    examples: int = 3  # similar playbooks to retrieve
    offline: bool = False  # never ask the model

    def __post_init__(self) -> None:
        if self.kinds is not None:
            unknown = sorted(set(self.kinds) - set(TOOL_KINDS))
            if unknown:
                raise InvalidRequest(
                    f"unknown tool kind(s) {', '.join(unknown)}; use: {', '.join(TOOL_KINDS)}"
                )
        if not 0 <= self.max_repairs <= MAX_REPAIRS:
            raise InvalidRequest(f"max_repairs must be between 0 and {MAX_REPAIRS}")

    def for_prompt(self) -> dict[str, Any]:
        return {
            "metadata.name": self.name,
            "metadata.path": self.path,
            "allowed tool kinds": sorted(self.kinds) if self.kinds else None,
            "workload inputs": self.workload,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "kinds": sorted(self.kinds) if self.kinds else None,
            "workload": self.workload,
            "fixtures": sorted(self.fixtures),
            "max_repairs": self.max_repairs,
            "examples": self.examples,
            "offline": self.offline,
        }


@dataclass(slots=True)
class Draft:
    """A generated playbook and everything known about it."""

    generation_id: str
    description: str
    yaml: str
    generator: str  # offline | model
    issues: list[Issue] = field(default_factory=list)
    dry_run: DryRunReport | None = None
    examples: list[Example] = field(default_factory=list)
    plan: Plan | None = None
    model: str | None = None
    rounds: int = 0
    llm_calls: list[LlmCall] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    code_tools: list[str] = field(default_factory=list)
    fingerprint: str | None = None
    path: str | None = None
    registered: dict[str, Any] | None = None

    @property
    def valid(self) -> bool:
        """Whether the YAML is a valid playbook that meets the constraints."""
        return not self.issues

    @property
    def gated(self) -> bool:
        """Whether it must be promoted by a human before it runs live."""
        return bool(self.code_tools)

    @property
    def ok(self) -> bool:
        """Valid, and its dry run completed."""
        return self.valid and self.dry_run is not None and self.dry_run.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "generation_id": self.generation_id,
            "valid": self.valid,
            "ok": self.ok,
            "generator": self.generator,
            "model": self.model,
            "path": self.path,
            "yaml": self.yaml,
            "issues": [issue.to_dict() for issue in self.issues],
            "dry_run": self.dry_run.to_dict() if self.dry_run else None,
            "examples": [example.to_dict() for example in self.examples],
            "plan": self.plan.to_dict() if self.plan else None,
            "unmapped": [item.to_dict() for item in self.plan.unmapped] if self.plan else [],
            "rounds": self.rounds,
            "llm": {
                "calls": [call.to_dict() for call in self.llm_calls],
                **total_cost(self.llm_calls),
            },
            "notes": self.notes,
            "gate": {
                "gated": self.gated,
                "code_tools": self.code_tools,
                "fingerprint": self.fingerprint,
            },
            "registered": self.registered,
        }


class Generator:
    """Writes drafts with a model when there is one, else with the offline planner."""

    def __init__(
        self,
        *,
        llm: LlmClient | None = None,
        planner: OfflinePlanner | None = None,
        history: History | None = None,
        catalog: CatalogStore | None = None,
        events: EventStore | None = None,
        credentials: Sequence[ListableCredentials] = (),
        redactor: Redactor | None = None,
    ) -> None:
        self.llm = llm
        self.planner = planner
        self.history = history
        self.catalog = catalog
        self.events = events
        self.credentials = list(credentials)
        self.redactor = redactor or (llm.redactor if llm is not None else Redactor())

    async def generate(self, description: str, constraints: Constraints | None = None) -> Draft:
        """A draft for ``description`` (see the module docstring); ``InvalidRequest`` for
        an empty or overlong description."""
        constraints = constraints or Constraints()
        text = description.strip()
        if not text:
            raise InvalidRequest("the description is empty; say what the playbook should do")
        if len(text) > MAX_DESCRIPTION:
            raise InvalidRequest(f"the description is longer than {MAX_DESCRIPTION} characters")
        generation_id = secrets.token_hex(8)
        notes: list[str] = []
        examples = await self._examples(text, constraints.examples, notes)
        draft: Draft | None = None
        calls: list[LlmCall] = []
        if self.llm is not None and self.llm.settings.configured and not constraints.offline:
            draft = await self._with_model(generation_id, text, constraints, examples, notes, calls)
        if draft is None:
            draft = await self._offline(generation_id, text, constraints, examples, notes, calls)
        await self._record(draft)
        return draft

    # ------------------------------------------------------------------ model

    async def _with_model(
        self,
        generation_id: str,
        description: str,
        constraints: Constraints,
        examples: list[Example],
        notes: list[str],
        calls: list[LlmCall],
    ) -> Draft | None:
        """The model's draft, or None when the offline planner is to write it (``notes``
        say why; ``calls`` collects every model call either way)."""
        assert self.llm is not None
        try:
            await learn_credentials(self.redactor, self.credentials, destination="model prompts")
        except LearningError as exc:
            notes.append(f"the model was not asked: {exc}")
            return None
        recorder = None
        if self.events is not None:
            recorder = record_in(self.events, f"generation:{generation_id}")
        messages: list[Message] = prompts.first_messages(
            description, constraints.for_prompt(), examples
        )
        draft: Draft | None = None
        for round_ in range(constraints.max_repairs + 1):
            try:
                reply = await self.llm.complete(
                    messages, purpose="generate" if round_ == 0 else "repair", recorder=recorder
                )
            except LlmError as exc:
                calls.extend(exc.calls if isinstance(exc, LlmCallFailed) else [])
                notes.append(f"the model failed, the offline planner wrote the draft: {exc}")
                return None
            calls.extend(reply.calls)
            text = prompts.extract_yaml(reply.text)
            playbook, issues = _validate(text, constraints)
            draft = Draft(
                generation_id,
                description,
                text,
                "model",
                issues,
                examples=examples,
                model=self.llm.settings.model,
                rounds=round_,
                llm_calls=calls,
                notes=notes,
            )
            messages = [*messages, {"role": "assistant", "content": reply.text}]
            if issues:
                messages.append(prompts.repair_message(issues))
                continue
            assert playbook is not None
            draft.dry_run = await self._dry_run(text, constraints)
            _describe(draft, playbook)
            if draft.dry_run.passed:
                return draft
            messages.append(prompts.dry_run_message(draft.dry_run.error, draft.dry_run.steps))
        if draft is not None and draft.valid:
            return draft  # valid, its dry run failing: the report says why
        notes.append(
            f"the model's draft was still invalid after {constraints.max_repairs} repair "
            "round(s); the offline planner wrote the draft"
        )
        return None

    # ------------------------------------------------------------------ offline

    async def _offline(
        self,
        generation_id: str,
        description: str,
        constraints: Constraints,
        examples: list[Example],
        notes: list[str],
        calls: Sequence[LlmCall] = (),
    ) -> Draft:
        planner = self.planner or shared_planner()
        plan = await offload(
            lambda: planner.plan(
                description,
                name=constraints.name,
                path=constraints.path,
                workload=dict(constraints.workload),
            ),
            name="planner",
        )
        playbook, issues = _validate(plan.yaml, constraints)
        if not issues and not any(action.step for action in plan.actions):
            issues.append(
                Issue(
                    "workflow",
                    "nothing in the description could be mapped to a step",
                    hint="describe actions: fetch a URL, transform records, query a table, "
                    "load into a table, post to a URL, ask a person, run a playbook",
                )
            )
        draft = Draft(
            generation_id,
            description,
            plan.yaml,
            "offline",
            issues,
            examples=examples,
            plan=plan,
            llm_calls=list(calls),
            notes=[*notes, *plan.notes],
        )
        if not issues:
            assert playbook is not None
            draft.dry_run = await self._dry_run(plan.yaml, constraints)
            _describe(draft, playbook)
        return draft

    # ------------------------------------------------------------------ parts

    async def _examples(self, description: str, k: int, notes: list[str]) -> list[Example]:
        if k <= 0:
            return []
        if self.history is None or self.catalog is None:
            notes.append("no similar playbooks were retrieved: no search index is configured")
            return []
        try:
            hits = await self.history.similar_playbooks(description, k=k)
        except (LearningError, NoetlError) as exc:
            notes.append(f"no similar playbooks were retrieved: {exc}")
            return []
        examples = []
        for hit in hits:
            if not hit.playbook_path:
                continue
            try:
                entry = await self.catalog.get(hit.playbook_path)
            except NotFound:
                continue
            content = self.redactor.text(entry.content)
            examples.append(Example(entry.path, entry.version, hit.score, content))
        return examples

    async def _dry_run(self, content: str, constraints: Constraints) -> DryRunReport:
        return await dry_run(
            content,
            workload=constraints.workload,
            recorded=constraints.fixtures,
            catalog=self.catalog,
        )

    async def _record(self, draft: Draft) -> None:
        if self.events is None or not draft.valid:
            return
        playbook = parse_playbook(draft.yaml)
        payload = {
            "description": self.redactor.text(draft.description)[:2000],
            "generator": draft.generator,
            "model": draft.model,
            "valid": draft.valid,
            "dry_run": draft.dry_run.status if draft.dry_run else None,
            "examples": [example.path for example in draft.examples],
            "unmapped": len(draft.plan.unmapped) if draft.plan else 0,
            "rounds": draft.rounds,
            "llm": total_cost(draft.llm_calls),
        }
        await self.events.append([generated_event(playbook, payload, draft.generation_id)])


def _validate(text: str, constraints: Constraints) -> tuple[Playbook | None, list[Issue]]:
    try:
        playbook = parse_playbook(text)
    except PlaybookInvalid as exc:
        return None, list(exc.issues)
    issues: list[Issue] = []
    if constraints.kinds is not None:
        extra = sorted(playbook.tool_kinds - set(constraints.kinds) - {"noop"})
        if extra:
            issues.append(
                Issue(
                    "workflow",
                    f"uses tool kind(s) {', '.join(extra)} that the constraints do not allow",
                    hint=f"use only: {', '.join(sorted(constraints.kinds))}",
                )
            )
    return playbook, issues


def _describe(draft: Draft, playbook: Playbook) -> None:
    draft.code_tools = code_tools(playbook)
    draft.fingerprint = fingerprint(playbook)
    draft.path = playbook.path


_planner: OfflinePlanner | None = None


def shared_planner() -> OfflinePlanner:
    """The process's offline planner (its pattern vectors are computed once)."""
    global _planner
    if _planner is None:
        _planner = OfflinePlanner()
    return _planner


async def generate(
    description: str,
    constraints: Constraints | None = None,
    *,
    llm: LlmClient | None = None,
    history: History | None = None,
    catalog: CatalogStore | None = None,
    events: EventStore | None = None,
) -> Draft:
    """One draft for ``description``: :meth:`Generator.generate` with these parts."""
    generator = Generator(llm=llm, history=history, catalog=catalog, events=events)
    return await generator.generate(description, constraints)
