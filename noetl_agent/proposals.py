"""Policy proposals: raised with evidence, decided by people, applied as new versions,
measured, and rolled back when they made things worse.

Every step is an event of the ``policy`` stream (see ``noetl_agent.review_queue``):

- ``policy.proposed``: a patch against one catalog version of a playbook, its evidence,
  rationale, who proposed it (a learner is the agent ``learner:<name>``; a hand-written
  patch is proposed by whoever submitted it), quorum and expiry. Its id,
  ``p-<fingerprint[:12]>-<generation>``, is the same for everyone raising the same
  change at the same time, so racing suggestions collapse into one event.
- ``policy.approved`` / ``policy.rejected``: one decision, who made it and why. Only a
  human approver decides, never the proposer and never an agent; ``quorum`` distinct
  approvers apply it, one rejection rejects it (with a comment). A proposal past its
  expiry, or whose playbook has a newer version than the one it patches (stale), cannot
  be decided: suggest again.
- ``policy.applied``: the patched playbook was registered as a new catalog version; new
  executions use it. It carries the inverse patch.
- ``policy.evaluated``: once enough executions finished while the change was in force
  (on its version and later versions that still carry it, up to the version of the next
  change of the playbook), the effect (failure rate, duration, cost, before against
  after) with its verdict; when the next change came first, the change is measured on
  the executions it had and the verdict says the window was cut short. ``worse`` raises
  a rollback proposal (the inverse patch against the latest version, when that version
  still carries the change), which needs approval like any other.
- ``policy.rolled_back``: a rollback proposal was applied; the original is rolled back.

De-duplication: a proposal is not raised while one with the same fingerprint (playbook,
step, kind, patch) is pending; after a rejection it is raised again only when its
evidence grew by half and reaches the learners' minimum sample size.
"""

from __future__ import annotations

import asyncio
import builtins
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import yaml

from engine.core import events as ev
from engine.core.events import Event
from engine.errors import Conflict, NotFound, StoreError
from engine.ports import CatalogEntry
from learning.errors import IndexUnavailable, ModelUnavailable
from learning.policy.history import PolicyHistory
from learning.policy.model import PROPOSAL_KINDS, LearnerConfig, ProposalDraft, Target
from learning.policy.patch import carries
from noetl_agent.decision_rules import require_decider
from noetl_agent.errors import AgentError, Forbidden
from noetl_agent.history import indexing_enabled
from noetl_agent.policy_changes import change_of
from noetl_agent.policy_settings import PolicySettings
from noetl_agent.principals import Principal
from noetl_agent.review_queue import POLICY_STREAM, ProposalState, ReviewQueue, Status

if TYPE_CHECKING:
    from engine.runtime.embedded import Engine
    from learning.policy.effect import EffectReport, EffectWindow
    from noetl_agent.history import History

DECIDE = "approve or reject policy proposals"
EVALUATOR = Principal("learner:evaluator", "agent", frozenset())
REGROWTH = 1.5  # a rejected proposal comes back once its evidence grew by this factor
SIMILAR_FAILURES = 3
Outcome = Literal["proposed", "pending", "suppressed"]


class ProposalRefused(AgentError):
    """A proposal request or decision that cannot be carried out as given."""


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _moment(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def proposal_id(fingerprint: str, generation: int) -> str:
    """``p-<fingerprint[:12]>-<generation>``."""
    return f"p-{fingerprint[:12]}-{generation}"


def _who(principal: Principal) -> dict[str, Any]:
    return {"name": principal.name, "kind": principal.kind}


@dataclass(frozen=True, slots=True)
class Proposed:
    """What ``propose`` did with a draft: raised it, found it pending, or held it back."""

    outcome: Outcome
    proposal: dict[str, Any]
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "reason": self.reason, "proposal": self.proposal}


@dataclass(slots=True)
class SuggestReport:
    """What a suggestion round did: new proposals, ones still pending, drafts held back
    (rejected without new evidence), and the effect evaluations that were due."""

    proposed: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    suppressed: list[dict[str, Any]] = field(default_factory=list)
    evaluated: list[dict[str, Any]] = field(default_factory=list)

    def add(self, result: Proposed) -> None:
        if result.outcome == "proposed":
            self.proposed.append(result.proposal)
        elif result.outcome == "pending":
            self.pending.append(result.proposal)
        else:
            self.suppressed.append({"reason": result.reason, "proposal": result.proposal})

    def to_dict(self) -> dict[str, Any]:
        return {
            "proposed": self.proposed,
            "pending": self.pending,
            "suppressed": self.suppressed,
            "evaluated": self.evaluated,
        }


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _warrants_rollback(kind: str, report: EffectReport) -> bool:
    """Whether a measured effect calls for undoing the change.

    Undoing a ``retry_remove`` would retry again an error the learner found permanent:
    only more failures (the error was transient after all) justify that, never a slower
    or dearer run, which that change cannot cause."""
    if report.verdict != "worse":
        return False
    if kind == "retry_remove":
        return report.failures.significant and report.failures.difference > 0
    return True


class ProposalService:
    """Proposals of one engine's catalog, kept in its event store (see above)."""

    def __init__(
        self,
        engine: Engine,
        *,
        history: History | None = None,
        settings: PolicySettings | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.engine = engine
        self.events = engine.events
        self.catalog = engine.catalog
        self.history = history
        self.settings = settings or PolicySettings.from_env()
        self.learner_config = LearnerConfig(
            target_success=self.settings.target_success, min_samples=self.settings.min_samples
        )
        self.queue = ReviewQueue(engine.events)
        self.runs = PolicyHistory(engine.events, engine.catalog)  # executions per version
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = asyncio.Lock()  # one read-check-append at a time in this process

    # ------------------------------------------------------------------ reading

    async def list(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every proposal (or those of one ``status``), newest first."""
        await self.queue.refresh()
        latest: dict[str, int | None] = {}
        listed = []
        for item in reversed(self.queue.all()):
            current = await self._status(item, latest)
            if status is None or current == status:
                listed.append(item.to_dict(current))
        return listed

    async def get(self, proposal_id: str) -> dict[str, Any]:
        """One proposal; ``NotFound`` for an unknown id."""
        await self.queue.refresh()
        item = self._item(proposal_id)
        return item.to_dict(await self._status(item, {}))

    def _item(self, proposal_id: str) -> ProposalState:
        item = self.queue.get(proposal_id)
        if item is None:
            raise NotFound(
                f"no proposal '{proposal_id}'; list them with `noetl-agent proposals list`"
            )
        return item

    async def _latest_version(self, path: str, cache: dict[str, int | None]) -> int | None:
        if path not in cache:
            try:
                cache[path] = (await self.catalog.get(path)).version
            except NotFound:
                cache[path] = None
        return cache[path]

    async def _status(self, item: ProposalState, cache: dict[str, int | None]) -> Status:
        """The stored status, or ``expired``/``stale`` for an open proposal past its expiry
        or whose playbook has moved on since the version it patches."""
        if item.status not in ("pending", "approved"):
            return item.status
        if item.status == "pending" and self._clock() >= _moment(item.expires_at):
            return "expired"
        if await self._latest_version(item.target.playbook, cache) != item.target.version:
            return "stale"
        return item.status

    # ------------------------------------------------------------------ raising

    async def propose(
        self,
        draft: ProposalDraft,
        proposed_by: Principal,
        requested_by: Principal | None = None,
        *,
        rolls_back: str | None = None,
    ) -> Proposed:
        """Raise ``draft`` unless the same change is pending or was rejected without new
        evidence since; ``PlaybookInvalid`` when its patch does not fit its target."""
        async with self._lock:
            return await self._propose(draft, proposed_by, requested_by, rolls_back)

    async def _propose(
        self,
        draft: ProposalDraft,
        proposed_by: Principal,
        requested_by: Principal | None,
        rolls_back: str | None,
    ) -> Proposed:
        await self.queue.refresh()
        entry = await self.catalog.get(draft.target.playbook, draft.target.version)
        change = change_of(entry, draft.patch)
        same = self.queue.with_fingerprint(draft.fingerprint)
        cache: dict[str, int | None] = {}
        for item in same:
            if await self._status(item, cache) in ("pending", "approved"):
                return Proposed("pending", item.to_dict(), f"{item.id} is pending already")
        rejected = [item for item in same if item.status == "rejected"]
        if rejected and proposed_by.kind == "agent":
            last = rejected[-1]
            needed = max(math.ceil(last.evidence_size * REGROWTH), self.learner_config.min_samples)
            if draft.evidence_size < needed:
                reason = (
                    f"{last.id} was rejected with {last.evidence_size} observations; it is "
                    f"raised again at {needed} or more (now {draft.evidence_size})"
                )
                return Proposed("suppressed", last.to_dict("rejected"), reason)
        generation = len(same) + 1
        pid = proposal_id(draft.fingerprint, generation)
        created = self._clock()
        payload = {
            "proposal_id": pid,
            "fingerprint": draft.fingerprint,
            "generation": generation,
            "target": draft.target.to_dict(),
            "kind": draft.kind,
            "patch": draft.patch,
            "evidence": draft.evidence,
            "evidence_size": draft.evidence_size,
            "rationale": draft.rationale,
            "learner": draft.learner,
            "notes": list(draft.notes),
            "proposed_by": _who(proposed_by),
            "requested_by": _who(requested_by) if requested_by else None,
            "quorum": self.settings.quorum,
            "expires_at": _timestamp(created + self.settings.expiry),
            "diff": change.diff,
            "rolls_back": rolls_back,
        }
        await self._append(ev.POLICY_PROPOSED, f"{pid}:proposed", pid, payload, created)
        return Proposed("proposed", self._item(pid).to_dict())

    async def submit(
        self,
        principal: Principal,
        playbook: str,
        version: int | None,
        step: str | None,
        kind: str,
        patch: Sequence[dict[str, Any]],
        rationale: str,
    ) -> dict[str, Any]:
        """Raise a hand-written proposal (operator); ``PlaybookInvalid`` names what is wrong
        with its patch, ``Conflict`` when the same change is pending already."""
        principal.require("operator", "submit policy proposals")
        if kind not in PROPOSAL_KINDS:
            raise ProposalRefused(
                f"'{kind}' is not a proposal kind; use one of {', '.join(PROPOSAL_KINDS)}"
            )
        if not rationale.strip():
            raise ProposalRefused("a proposal needs a rationale saying why the change helps")
        entry = await self.catalog.get(playbook, version)
        if step is not None:
            self._check_step(entry, step)
        draft = ProposalDraft(
            target=Target(entry.path, entry.version, step),
            kind=kind,  # checked against PROPOSAL_KINDS above
            patch=[dict(operation) for operation in patch],
            evidence={"source": "hand-written", "submitted_by": principal.name},
            rationale=rationale.strip(),
            evidence_size=0,
        )
        result = await self.propose(draft, principal, principal)
        if result.outcome != "proposed":
            raise Conflict(
                f"the same change is proposed already ({result.reason}); decide that one: "
                f"`noetl-agent proposals show {result.proposal['id']}`"
            )
        return result.proposal

    def _check_step(self, entry: CatalogEntry, step: str) -> None:
        from engine.dsl.loader import parse_playbook

        steps = [s.step for s in parse_playbook(entry.content, source=entry.path).workflow]
        if step not in steps:
            raise NotFound(
                f"{entry.path} version {entry.version} has no step '{step}'; "
                f"its steps are {', '.join(steps)}"
            )

    async def suggest(self, principal: Principal, playbook: str | None = None) -> SuggestReport:
        """Measure the effects that are due, ask the learners for drafts (of one playbook,
        or all) and raise those that are new, with similar past failures as evidence."""
        principal.require("operator", "ask for policy proposals")
        report = SuggestReport()
        report.evaluated = await self.evaluate_due(requested_by=principal)
        from learning.policy.learners import learn

        drafts = await learn(
            self.events,
            self.catalog,
            playbook=playbook,
            config=self.learner_config,
            history=self.runs,
        )
        indexed = False
        for draft in drafts:
            similar, indexed = await self._similar_failures(draft, indexed)
            enriched = ProposalDraft(
                target=draft.target,
                kind=draft.kind,
                patch=draft.patch,
                evidence={**draft.evidence, "similar_failures": similar},
                rationale=draft.rationale,
                evidence_size=draft.evidence_size,
                learner=draft.learner,
                notes=draft.notes,
            )
            learner = Principal(f"learner:{draft.learner or draft.kind}", "agent", frozenset())
            report.add(await self.propose(enriched, learner, principal))
        return report

    async def _similar_failures(
        self, draft: ProposalDraft, indexed: bool
    ) -> tuple[dict[str, Any], bool]:
        """The most similar past failures from the search index, or why there are none."""
        if self.history is None:
            return {"available": False, "reason": "this stack has no search index"}, indexed
        if not indexing_enabled():
            reason = "the search index is off (NOETL_INDEXER=off)"
            return {"available": False, "reason": reason}, indexed
        error = draft.evidence.get("error_class") or draft.kind
        text = f"{draft.target.playbook} step {draft.target.step or ''} failed: {error}"
        try:
            if not indexed:
                await self.history.index()
            hits = await self.history.similar_failures(text=text, k=SIMILAR_FAILURES)
        except (IndexUnavailable, ModelUnavailable, StoreError) as exc:
            return {"available": False, "reason": str(exc)}, True
        return {"available": True, "query": text, "hits": [h.to_dict() for h in hits]}, True

    # ------------------------------------------------------------------ deciding

    async def decide(
        self, proposal_id: str, principal: Principal, approved: bool, comment: str | None = None
    ) -> dict[str, Any]:
        """Record a human approver's decision; at quorum apply the patch as a new version.

        ``Forbidden`` for an agent, a principal without the approver role, or the
        proposer; ``Conflict`` when it is decided, expired or stale, or this approver
        approved it already; ``ProposalRefused`` for a rejection without a comment."""
        require_decider(principal, DECIDE)
        async with self._lock:
            await self.queue.refresh()
            item = self._item(proposal_id)
            status = await self._status(item, {})
            if status == "approved":  # quorum was reached but the application stopped
                await self._apply(item)
                return await self.get(proposal_id)
            if status != "pending":
                raise Conflict(self._closed(item, status))
            if principal.name == item.proposed_by.get("name"):
                raise Forbidden(
                    f"{principal.kind} principal '{principal.name}' cannot decide proposal "
                    f"{item.id}: it proposed it; another approver must decide"
                )
            if approved and principal.name in item.approvers:
                raise Conflict(
                    f"'{principal.name}' approved {item.id} already; it needs "
                    f"{item.quorum - len(item.approvers)} more distinct approver(s)"
                )
            text = (comment or "").strip() or None
            if not approved and text is None:
                raise ProposalRefused(
                    f"rejecting {item.id} needs a comment saying why (--comment), so the "
                    "learner's next proposal can be judged against it"
                )
            reaches = approved and len(item.approvers) + 1 >= item.quorum
            if reaches:  # refuse before recording when the change no longer applies
                change_of(
                    await self.catalog.get(item.target.playbook, item.target.version), item.patch
                )
            kind = ev.POLICY_APPROVED if approved else ev.POLICY_REJECTED
            verb = "approved" if approved else "rejected"
            payload = {
                "proposal_id": item.id,
                "decided_by": principal.name,
                "decided_by_kind": principal.kind,
                "comment": text,
            }
            await self._append(kind, f"{item.id}:{verb}:{principal.name}", item.id, payload)
            item = self._item(proposal_id)
            if item.status == "approved":
                await self._apply(item)
        return await self.get(proposal_id)

    def _closed(self, item: ProposalState, status: Status) -> str:
        if status == "expired":
            return f"proposal {item.id} expired at {item.expires_at}; suggest again"
        if status == "stale":
            return (
                f"proposal {item.id} is stale: it patches {item.target.playbook} version "
                f"{item.target.version}, which is no longer the latest; suggest again"
            )
        return f"proposal {item.id} was already decided ({status})"

    async def _apply(self, item: ProposalState) -> None:
        """Register the patched target as a new version and record ``policy.applied``
        (and ``policy.rolled_back`` for the original when ``item`` is a rollback)."""
        path = item.target.playbook
        entry = await self.catalog.get(path, item.target.version)
        if (await self.catalog.get(path)).version != entry.version:
            await self.queue.refresh()
            if self._item(item.id).status == "applied":  # another server applied it just now
                return
            raise Conflict(self._closed(item, "stale"))
        change = change_of(entry, item.patch)
        registered = await self.engine.register(change.content, source=entry.source)
        applied = {
            "proposal_id": item.id,
            "playbook": path,
            "step": item.target.step,
            "kind": item.kind,
            "from_version": entry.version,
            "to_version": registered.version,
            "inverse_patch": change.inverse,
        }
        await self._append(ev.POLICY_APPLIED, f"{item.id}:applied", item.id, applied)
        if item.rolls_back:
            rolled = {
                "proposal_id": item.rolls_back,
                "rollback_proposal_id": item.id,
                "playbook": path,
                "from_version": entry.version,
                "to_version": registered.version,
            }
            await self._append(
                ev.POLICY_ROLLED_BACK, f"{item.rolls_back}:rolled_back", item.rolls_back, rolled
            )

    # ------------------------------------------------------------------ measuring

    async def evaluate_due(
        self, requested_by: Principal | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Measure every applied change with enough finished executions while it was in
        force, or whose window a later change closed (``policy.evaluated``); a ``worse``
        verdict raises a rollback proposal."""
        from learning.policy.effect import MIN_JUDGED, evaluate_effect

        async with self._lock:
            await self.queue.refresh()
            done: builtins.list[dict[str, Any]] = []
            runs = self.runs
            if any(item.status == "applied" for item in self.queue.all()):
                await runs.refresh()
            changes = [item for item in self.queue.all() if item.applied_version is not None]
            for item in self.queue.all():
                if item.status != "applied" or item.evaluation is not None or item.rolls_back:
                    continue
                assert item.from_version is not None and item.applied_version is not None
                path = item.target.playbook
                window, documents = await self._effect_window(item, changes)
                before = runs.execution_runs(path, item.from_version)
                after = [run for v in window.versions for run in runs.execution_runs(path, v)]
                if len(after) < self.settings.evaluate_after and not window.closed:
                    continue
                expected = item.evidence.get("expected") or {}
                report = evaluate_effect(
                    before,
                    after,
                    confidence=self.learner_config.confidence,
                    expected_seconds=_number(
                        expected.get("seconds_added_per_run", expected.get("seconds_per_run"))
                    ),
                    expected_cost=_number(
                        expected.get("cost_added_per_run", expected.get("cost_per_run"))
                    ),
                    window=window,
                    min_after=min(self.settings.evaluate_after, MIN_JUDGED),
                )
                evaluation = report.to_dict()
                rollback = None
                if _warrants_rollback(item.kind, report):
                    target = await self._rollback_target(item, documents)
                    if isinstance(target, int):
                        rollback = await self._raise_rollback(
                            item, evaluation, requested_by, target
                        )
                    else:
                        evaluation["rollback_not_raised"] = target
                payload = {
                    "proposal_id": item.id,
                    "playbook": item.target.playbook,
                    "from_version": item.from_version,
                    "to_version": item.applied_version,
                    "evaluation": evaluation,
                    "rollback_proposal_id": rollback,
                }
                await self._append(ev.POLICY_EVALUATED, f"{item.id}:evaluated", item.id, payload)
                done.append(self._item(item.id).to_dict())
        return done

    async def effect_window(self, proposal_id: str) -> EffectWindow | None:
        """The versions on which an applied proposal's change has been in force so far,
        as ``evaluate_due`` measures them; None for a proposal not applied."""
        await self.queue.refresh()
        item = self._item(proposal_id)
        if item.applied_version is None:
            return None
        changes = [other for other in self.queue.all() if other.applied_version is not None]
        window, _ = await self._effect_window(item, changes)
        return window

    async def _effect_window(
        self, item: ProposalState, changes: Sequence[ProposalState]
    ) -> tuple[EffectWindow, dict[int, Any]]:
        """The versions on which ``item``'s change was in force: the one it created and
        the later ones that still carry it, up to the version the next change of the same
        playbook created; with the catalog documents read on the way (by version)."""
        from learning.policy.effect import EffectWindow

        assert item.applied_version is not None
        first = item.applied_version
        path = item.target.playbook
        later = sorted(
            (
                other
                for other in changes
                if other.id != item.id
                and other.target.playbook == path
                and other.applied_version is not None
                and other.applied_version > first
            ),
            key=lambda other: other.applied_version or 0,
        )
        wanted = self.settings.evaluate_after
        try:
            entries = {entry.version: entry for entry in await self.catalog.versions(path)}
        except NotFound:
            entries = {}
        if first not in entries:
            return EffectWindow((first,), wanted), {}
        documents: dict[int, Any] = {first: yaml.safe_load(entries[first].content)}
        versions = [first]
        for version in sorted(v for v in entries if v > first):
            if later and version >= (later[0].applied_version or 0):
                nxt = later[0]
                cause = f"proposal {nxt.id} ({nxt.kind}) was applied as version {version}"
                return EffectWindow(tuple(versions), wanted, cause, version), documents
            documents[version] = yaml.safe_load(entries[version].content)
            if not carries(item.patch, documents[first], documents[version]):
                cause = f"version {version} was registered without this change"
                return EffectWindow(tuple(versions), wanted, cause, version), documents
            versions.append(version)
        return EffectWindow(tuple(versions), wanted), documents

    async def _rollback_target(self, item: ProposalState, documents: dict[int, Any]) -> int | str:
        """The version a rollback of ``item`` patches: the latest, when it still carries the
        change (its inverse patch undoes it there); otherwise why no rollback is raised."""
        assert item.applied_version is not None
        latest = await self.catalog.get(item.target.playbook)
        if latest.version == item.applied_version:
            return latest.version
        applied = documents.get(item.applied_version)
        if applied is None:
            applied = yaml.safe_load(
                (await self.catalog.get(item.target.playbook, item.applied_version)).content
            )
        if carries(item.patch, applied, yaml.safe_load(latest.content)):
            return latest.version
        return (
            f"the latest version ({latest.version}) no longer holds this change where it "
            "made it, so its inverse patch cannot be applied safely; undo it by hand"
        )

    async def _raise_rollback(
        self,
        item: ProposalState,
        evaluation: dict[str, Any],
        requested_by: Principal | None,
        target: int,
    ) -> str:
        assert item.applied_version is not None and item.inverse_patch is not None
        draft = ProposalDraft(
            target=Target(item.target.playbook, target, item.target.step),
            kind="rollback",
            patch=item.inverse_patch,
            evidence={"rolls_back": item.id, "evaluation": evaluation},
            rationale=(
                f"Proposal {item.id} ({item.kind}) made {item.target.playbook} worse: "
                f"{evaluation.get('summary', '')} Undo it, returning to the policy of "
                f"version {item.from_version}."
            ),
            evidence_size=int(evaluation.get("n_after") or 0),
            learner="evaluator",
        )
        result = await self._propose(draft, EVALUATOR, requested_by, item.id)
        return str(result.proposal["id"])

    # ------------------------------------------------------------------ storing

    async def _append(
        self,
        event_type: str,
        event_id: str,
        proposal: str,
        payload: dict[str, Any],
        at: datetime | None = None,
    ) -> None:
        event = Event(
            event_id=event_id,
            event_type=event_type,
            execution_id=POLICY_STREAM,
            timestamp=_timestamp(at or self._clock()),
            entity_type="proposal",
            entity_id=proposal,
            payload=payload,
        )
        await self.events.append([event])
        await self.queue.refresh()
