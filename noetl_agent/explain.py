"""Explain a failed execution: root cause, evidence and suggested fixes.

    explanation = await Explainer(events, catalog, history=history).explain(execution_id)
    explanation.causes[0].title     # the likeliest cause
    explanation.to_dict()           # what the CLI and the API show

For a failed execution it gathers the failed step's events, inputs (secrets masked) and
error (:mod:`noetl_agent.explain_evidence`), the past failures most like it (the search
index of :class:`~noetl_agent.history.History`) and how each was resolved: a later
successful run of the same playbook through that step, a policy applied to the playbook
afterwards (``policy.applied`` of the ``policy`` stream), and the feedback recorded on
its explanation (:mod:`noetl_agent.feedback`). From those it ranks the likely causes
(:mod:`noetl_agent.explain_causes`): offline that ranking, the rule-based hints and the
evidence are the answer; with a model configured (``NOETL_LLM_MODEL``) the model also
writes it in prose from that evidence (:mod:`noetl_agent.explain_prose`).

An execution that did not fail gets an answer saying so. Without a search index (or
when it cannot be opened) the explanation says that similar failures were not consulted
and ranks causes by the rules alone.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.core import events as ev
from engine.core.events import Event
from engine.dsl.loader import parse_playbook
from engine.dsl.models import Playbook
from engine.errors import NoetlError
from engine.ports import CatalogStore, EventStore, ExecutionSummary
from engine.runtime.redaction import Redactor, process_redactor
from learning.errors import IndexUnavailable, InvalidQuery, ModelUnavailable, SecretsUnavailable
from learning.secrets_mask import ListableCredentials, learn_credentials
from noetl_agent.explain_causes import (
    Cause,
    FailureError,
    PastFailure,
    fixes_of,
    rank,
    transient,
)
from noetl_agent.explain_evidence import FailedStep, Masker, error_of, failed_step
from noetl_agent.explain_prose import configured_client, prompt
from noetl_agent.feedback import Feedback, feedback_event, feedback_in, record_feedback
from noetl_agent.llm import LlmClient, LlmError, total_cost
from noetl_agent.principals import Principal

if TYPE_CHECKING:
    from noetl_agent.history import History

logger = logging.getLogger(__name__)
POLICY_STREAM = "policy"  # the pseudo execution id of policy events
DEFAULT_K = 5
MAX_LATER_RUNS = 20  # later runs of a playbook read to find the one that resolved a failure
NOT_FAILED = {
    "completed": "it completed successfully",
    "running": "it is still running",
    "paused": "it is paused, waiting for a person to decide an approval",
    "cancelled": "it was cancelled",
}


@dataclass(frozen=True, slots=True)
class Resolution:
    """How a failure was resolved: a later successful run, or a policy applied after it."""

    kind: str  # later_success | policy_applied
    at: str
    execution_id: str | None = None  # the later successful run
    playbook_version: int | None = None
    changes: tuple[str, ...] = ()  # what differed from the failed run
    proposal_id: str | None = None
    policy_kind: str | None = None
    from_version: int | None = None
    to_version: int | None = None
    rationale: str | None = None

    def describe(self) -> str:
        if self.kind == "policy_applied":
            what = f"policy {self.policy_kind or 'change'} ({self.proposal_id})"
            return f"{what} applied: v{self.from_version} -> v{self.to_version}" + (
                f"; {self.rationale}" if self.rationale else ""
            )
        changed = f" after {'; '.join(self.changes)}" if self.changes else ""
        return f"later run {self.execution_id} succeeded{changed}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "at": self.at,
            "execution_id": self.execution_id,
            "playbook_version": self.playbook_version,
            "changes": list(self.changes),
            "proposal_id": self.proposal_id,
            "policy_kind": self.policy_kind,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "rationale": self.rationale,
            "summary": self.describe(),
        }


@dataclass(slots=True)
class SimilarFailure:
    """A past failure like this one, how it was resolved and what its feedback said."""

    execution_id: str
    playbook_path: str | None
    playbook_version: int | None
    step: str | None
    similarity: float
    error: FailureError
    timestamp: str | None
    resolutions: list[Resolution] = field(default_factory=list)
    feedback: list[Feedback] = field(default_factory=list)

    def past(self) -> PastFailure:
        """The failure as the ranking sees it: a cause is confirmed when more feedback
        said it helped than said it did not, refuted when fewer did."""
        net: dict[str, int] = {}
        for item in self.feedback:
            if item.cause:
                net[item.cause] = net.get(item.cause, 0) + (1 if item.helpful else -1)
        return PastFailure(
            self.execution_id,
            self.similarity,
            self.error,
            resolved=bool(self.resolutions),
            confirmed=tuple(cause for cause, votes in net.items() if votes > 0),
            refuted=tuple(cause for cause, votes in net.items() if votes < 0),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "playbook_path": self.playbook_path,
            "playbook_version": self.playbook_version,
            "step": self.step,
            "similarity": round(self.similarity, 4),
            "error": self.error.text,
            "timestamp": self.timestamp,
            "resolutions": [r.to_dict() for r in self.resolutions],
            "feedback": [
                {"helpful": f.helpful, "cause": f.cause, "comment": f.comment}
                for f in self.feedback
            ],
        }


@dataclass(slots=True)
class Explanation:
    """The answer to "why did this execution fail?"."""

    execution_id: str
    playbook_path: str
    playbook_version: int | None
    status: str
    failed: bool
    summary: str
    failure: FailedStep | None = None
    causes: list[Cause] = field(default_factory=list)
    similar: list[SimilarFailure] = field(default_factory=list)
    resolutions: list[Resolution] = field(default_factory=list)  # of this failure
    suggested_fixes: list[str] = field(default_factory=list)
    feedback: list[Feedback] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    prose: str | None = None
    model: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)

    @property
    def root_cause(self) -> Cause | None:
        return self.causes[0] if self.causes else None

    def evidence(self) -> dict[str, Any]:
        """The structured evidence (what a model is given to write prose from)."""
        return {
            "execution_id": self.execution_id,
            "playbook_path": self.playbook_path,
            "playbook_version": self.playbook_version,
            "status": self.status,
            "failure": self.failure.to_dict() if self.failure else None,
            "likely_causes": [cause.to_dict() for cause in self.causes],
            "similar_failures": [item.to_dict() for item in self.similar],
            "resolutions": [r.to_dict() for r in self.resolutions],
        }

    def to_dict(self) -> dict[str, Any]:
        root = self.root_cause
        return {
            "execution_id": self.execution_id,
            "playbook_path": self.playbook_path,
            "playbook_version": self.playbook_version,
            "status": self.status,
            "failed": self.failed,
            "summary": self.summary,
            "root_cause": root.to_dict() if root else None,
            "causes": [cause.to_dict() for cause in self.causes],
            "failure": self.failure.to_dict() if self.failure else None,
            "similar": [item.to_dict() for item in self.similar],
            "resolutions": [r.to_dict() for r in self.resolutions],
            "suggested_fixes": list(self.suggested_fixes),
            "feedback": [f.to_dict() for f in self.feedback],
            "notes": list(self.notes),
            "prose": self.prose,
            "model": self.model,
            "usage": dict(self.usage),
        }


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def _after(value: str | None, moment: str | None) -> bool:
    later, then = _parse_time(value), _parse_time(moment)
    if later is None or then is None:
        return str(value or "") > str(moment or "")
    return later > then


def _negated(timestamp: str | None) -> tuple[float, str]:
    """A sort key putting later timestamps first."""
    parsed = _parse_time(timestamp)
    return (-parsed.timestamp() if parsed else 0.0, timestamp or "")


def _workload_of(events: Sequence[Event]) -> dict[str, Any]:
    for event in events:
        if event.event_type == ev.PLAYBOOK_EXECUTION_REQUESTED:
            return dict(event.payload.get("workload") or {})
    return {}


def _step_succeeded(events: Sequence[Event], step: str | None) -> bool:
    for event in events:
        finished = event.event_type == ev.STEP_FINISHED and event.status == ev.STATUS_SUCCESS
        if finished and (step is None or event.entity_id == step):
            return True
    return False


@dataclass(slots=True)
class _Policy:
    proposal_id: str
    playbook: str | None = None
    step: str | None = None
    kind: str | None = None
    rationale: str | None = None
    applied: Event | None = None


class _Lookup:
    """What one explanation reads more than once: executions, policies and event logs."""

    def __init__(self, events: EventStore) -> None:
        self.events = events
        self._executions: list[ExecutionSummary] | None = None
        self._policies: list[_Policy] | None = None
        self._logs: dict[str, list[Event]] = {}

    async def log(self, execution_id: str) -> list[Event]:
        if execution_id not in self._logs:
            self._logs[execution_id] = await self.events.read(execution_id)
        return self._logs[execution_id]

    async def executions(self) -> list[ExecutionSummary]:
        if self._executions is None:
            self._executions = await self.events.list_executions(limit=10_000)
        return self._executions

    async def policies(self) -> list[_Policy]:
        if self._policies is None:
            found: dict[str, _Policy] = {}
            for event in await self.events.read(POLICY_STREAM):
                proposal_id = str(event.payload.get("proposal_id") or "")
                if not proposal_id:
                    continue
                item = found.setdefault(proposal_id, _Policy(proposal_id))
                if event.event_type == ev.POLICY_PROPOSED:
                    target = event.payload.get("target") or {}
                    if isinstance(target, Mapping):
                        item.playbook = target.get("playbook")
                        item.step = target.get("step")
                    item.kind = event.payload.get("kind")
                    item.rationale = event.payload.get("rationale")
                elif event.event_type == ev.POLICY_APPLIED and item.applied is None:
                    item.applied = event
            self._policies = [item for item in found.values() if item.applied is not None]
        return self._policies

    async def resolutions(
        self,
        execution_id: str,
        playbook_path: str | None,
        version: int | None,
        step: str | None,
        failed_at: str | None,
    ) -> list[Resolution]:
        """How the failure of ``execution_id`` was resolved, earliest first."""
        if not playbook_path:
            return []
        found: list[Resolution] = []
        for item in await self.policies():
            applied = item.applied
            assert applied is not None
            if item.playbook != playbook_path or (item.step and step and item.step != step):
                continue
            if not _after(applied.timestamp, failed_at):
                continue
            found.append(
                Resolution(
                    kind="policy_applied",
                    at=applied.timestamp,
                    proposal_id=item.proposal_id,
                    policy_kind=item.kind,
                    from_version=applied.payload.get("from_version"),
                    to_version=applied.payload.get("to_version"),
                    rationale=item.rationale,
                )
            )
        later = [
            summary
            for summary in await self.executions()
            if summary.playbook_path == playbook_path
            and summary.status == "completed"
            and summary.execution_id != execution_id
            and _after(summary.started_at, failed_at)
        ]
        later.sort(key=lambda summary: summary.started_at)
        failed_workload = _workload_of(await self.log(execution_id))
        for summary in later[:MAX_LATER_RUNS]:
            log = await self.log(summary.execution_id)
            if not _step_succeeded(log, step):
                continue
            changes: list[str] = []
            if version is not None and summary.playbook_version != version:
                changes.append(f"playbook v{version} -> v{summary.playbook_version}")
            workload = _workload_of(log)
            keys = sorted(
                key
                for key in set(workload) | set(failed_workload)
                if workload.get(key) != failed_workload.get(key)
            )
            if keys:
                changes.append("workload changed: " + ", ".join(keys))
            found.append(
                Resolution(
                    kind="later_success",
                    at=summary.finished_at or summary.started_at,
                    execution_id=summary.execution_id,
                    playbook_version=summary.playbook_version,
                    changes=tuple(changes),
                )
            )
            break
        found.sort(key=lambda item: _parse_time(item.at) or datetime.max.astimezone())
        return found


class Explainer:
    """Explains failed executions of one event store and catalog (see the module)."""

    def __init__(
        self,
        events: EventStore,
        catalog: CatalogStore,
        *,
        history: History | None = None,
        credentials: Sequence[ListableCredentials] = (),
        llm: LlmClient | None = None,
        k: int = DEFAULT_K,
    ) -> None:
        """``history`` finds similar failures (None: the rules alone); ``credentials``
        are the sources whose values are masked (those of ``history`` are added);
        ``llm`` is the model client (default: the one ``NOETL_LLM_MODEL`` configures,
        none when it is unset)."""
        self.events = events
        self.catalog = catalog
        self.history = history
        sources = list(credentials)
        if history is not None:
            sources += [source for source in history.credentials if source not in sources]
        self.credentials = sources
        self.llm = llm
        self.k = k
        self._redactor: Redactor | None = None
        self._unreadable: str | None = None  # why a credential could not be learned

    async def masker(self) -> Masker:
        """A masker knowing every credential value of the sources (read again each time,
        so a credential stored since is masked too)."""
        if self._redactor is None:
            self._redactor = Redactor()
        self._unreadable = None
        try:
            await learn_credentials(self._redactor, self.credentials, destination="explanations")
        except SecretsUnavailable as exc:
            logger.warning("%s", exc)
            self._unreadable = str(exc)
        return Masker(process_redactor(), self._redactor)

    async def _playbook(self, summary: ExecutionSummary) -> Playbook | None:
        try:
            entry = await self.catalog.get(summary.playbook_path, summary.playbook_version)
            return parse_playbook(entry.content, check=False)
        except NoetlError:
            return None

    async def explain(self, execution_id: str, *, use_model: bool = True) -> Explanation:
        """The explanation of ``execution_id``; ``NotFound`` for an unknown id. With
        ``use_model`` false the model is not asked even when one is configured."""
        summary = await self.events.get_execution(execution_id)
        lookup = _Lookup(self.events)
        log = await lookup.log(execution_id)
        feedback = feedback_in(log)
        base: dict[str, Any] = {
            "execution_id": execution_id,
            "playbook_path": summary.playbook_path,
            "playbook_version": summary.playbook_version,
            "status": summary.status,
            "feedback": feedback,
        }
        if summary.status != "failed":
            reason = NOT_FAILED.get(summary.status, f"its status is {summary.status}")
            return Explanation(
                **base,
                failed=False,
                summary=f"execution {execution_id} did not fail: {reason}; nothing to explain",
            )
        masker = await self.masker()
        playbook = await self._playbook(summary)
        failure = failed_step(log, playbook, masker)
        explanation = Explanation(**base, failed=True, summary="", failure=failure)
        error = failure.error if failure else error_of(summary.error or "unknown error")
        explanation.similar = await self._similar(execution_id, explanation.notes, lookup)
        for item in explanation.similar:
            item.error = FailureError(masker.text(item.error.message), item.error.code)
        explanation.causes = rank(error, [item.past() for item in explanation.similar])
        explanation.resolutions = await lookup.resolutions(
            execution_id,
            summary.playbook_path,
            summary.playbook_version,
            failure.step if failure else None,
            failure.failed_at if failure else summary.finished_at,
        )
        explanation.suggested_fixes = _fixes(explanation)
        explanation.summary = _summary(explanation, error)
        llm = self.llm or configured_client(self.events, execution_id)
        if use_model and llm is not None:
            if self._unreadable:
                # A value that could not be learned could not be masked: keep it local.
                explanation.notes.append(
                    f"the model was not asked: {self._unreadable.split(';')[0]}"
                )
            else:
                await self._prose(explanation, masker, llm)
        return explanation

    async def _similar(
        self, execution_id: str, notes: list[str], lookup: _Lookup
    ) -> list[SimilarFailure]:
        if self.history is None:
            notes.append("no search index: similar past failures were not consulted")
            return []
        try:
            hits = await self.history.similar_failures(execution_id=execution_id, k=self.k)
        except InvalidQuery as exc:
            notes.append(f"similar past failures were not consulted: {exc}")
            return []
        except (IndexUnavailable, ModelUnavailable, SecretsUnavailable) as exc:
            notes.append(f"the search index is unavailable ({exc}); causes ranked by rules only")
            return []
        found: list[SimilarFailure] = []
        for hit in hits:
            if not hit.execution_id:
                continue
            payload = hit.payload
            first_line = hit.text.splitlines()[0] if hit.text else "unknown error"
            error = FailureError(
                str(payload.get("message") or first_line),
                payload.get("error_code"),
                payload.get("error_kind"),
            )
            item = SimilarFailure(
                execution_id=hit.execution_id,
                playbook_path=hit.playbook_path,
                playbook_version=payload.get("playbook_version"),
                step=hit.step,
                similarity=float(payload.get("cosine", hit.score)),  # the plain cosine
                error=error,
                timestamp=payload.get("timestamp"),
            )
            item.resolutions = await lookup.resolutions(
                hit.execution_id, hit.playbook_path, item.playbook_version, hit.step, item.timestamp
            )
            item.feedback = feedback_in(await lookup.log(hit.execution_id))
            found.append(item)
        if not found:
            notes.append("no similar past failure is indexed")
        # Equally similar failures (the same message) in a stable order: newest first.
        found.sort(key=lambda item: (-round(item.similarity, 6), _negated(item.timestamp)))
        return found

    async def _prose(self, explanation: Explanation, masker: Masker, llm: LlmClient) -> None:
        messages = prompt(explanation.evidence(), masker)
        try:
            reply = await llm.complete(messages, purpose="explain")
        except LlmError as exc:  # the offline answer stands
            logger.warning("the model could not explain %s: %s", explanation.execution_id, exc)
            explanation.notes.append(f"{exc}; the explanation is the offline one")
            return
        explanation.usage = total_cost(reply.calls)
        if reply.text.strip():
            explanation.prose = masker.text(reply.text.strip())
            explanation.model = llm.settings.model

    async def record_feedback(
        self,
        execution_id: str,
        *,
        helpful: bool,
        principal: Principal,
        comment: str | None = None,
        cause: str | None = None,
    ) -> Feedback:
        """Record whether the explanation of ``execution_id`` helped; the cause it is
        about is ``cause``, else the first cause of the explanation as it stands (offline).
        ``NotFound`` for an unknown execution."""
        if cause is None:
            explanation = await self.explain(execution_id, use_model=False)
            cause = explanation.root_cause.id if explanation.root_cause else None
        masker = await self.masker()
        redactor = self._redactor or Redactor()
        event = feedback_event(
            execution_id,
            helpful=helpful,
            principal=principal,
            comment=masker.text(comment) if comment else None,
            cause=cause,
            redactor=redactor,
        )
        return await record_feedback(self.events, event)


def _fixes(explanation: Explanation) -> list[str]:
    fixes: list[str] = []
    root = explanation.root_cause
    if root is not None:
        fixes.extend(fixes_of(root.id))
    for item in explanation.similar:
        for resolution in item.resolutions:
            line = f"a similar failure ({item.execution_id}) was resolved: {resolution.describe()}"
            if line not in fixes:
                fixes.append(line)
    failure = explanation.failure
    if root is not None and failure is not None and failure.attempts <= 1 and transient(root.id):
        fixes.append(
            f"step {failure.step} made a single attempt; a retry policy would absorb "
            "transient errors like this one"
        )
    return fixes


def _summary(explanation: Explanation, error: FailureError) -> str:
    failure = explanation.failure
    where = f"step {failure.step}" if failure and failure.step else "the execution"
    root = explanation.root_cause
    line = f"{where} failed with {error.text!r}"
    if failure is not None and failure.attempts > 1:
        line += f" after {failure.attempts} attempts"
    if root is not None:
        line += f"; likely cause: {root.title} ({root.score:.0%} of the evidence)"
    if explanation.resolutions:
        line += f"; since then: {explanation.resolutions[0].describe()}"
    return line


@asynccontextmanager
async def local_explainer(home: Path | None = None) -> AsyncIterator[Explainer]:
    """The explainer of the embedded stack under ``home`` (default ``$NOETL_HOME``), with
    its local search index."""
    from noetl_agent.history import local_history

    async with local_history(home) as history:
        yield Explainer(history.events, history.catalog, history=history)


__all__ = [
    "Explainer",
    "Explanation",
    "Resolution",
    "SimilarFailure",
    "local_explainer",
]
