"""The structured results of the tools: each tool's output schema is one of these.

Fields a model relies on are declared; documents the services keep growing (proposals,
explanations, search hits) also carry their further keys (``extra="allow"``), so the
schema states the contract without truncating what the service says.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Open(BaseModel):
    """A service document: the declared fields plus whatever else it carries."""

    model_config = ConfigDict(extra="allow")


class PlaybookSummary(BaseModel):
    path: str = Field(description="Catalog path, the playbook's id (e.g. etl/load_orders).")
    version: int = Field(description="Catalog version, 1 for the first registration.")
    name: str
    description: str | None = None
    registered_at: str


class PlaybookList(BaseModel):
    playbooks: list[PlaybookSummary] = Field(description="Latest version of each, by path.")


class PlaybookDetail(PlaybookSummary):
    content: str = Field(description="The playbook's YAML.")
    uri: str = Field(description="The resource holding this version's YAML.")


class PlaybookIssue(BaseModel):
    path: str = Field(description="Where in the document, e.g. workflow[1].tool.kind.")
    line: int | None = Field(None, description="Line in the YAML, when known.")
    message: str = Field(description="What is wrong.")
    hint: str | None = Field(None, description="How to fix it.")


class Validation(BaseModel):
    valid: bool
    path: str | None = Field(None, description="Catalog path the playbook declares.")
    name: str | None = None
    steps: int | None = Field(None, description="Number of workflow steps.")
    tool_kinds: list[str] = Field(default_factory=list)
    issues: list[PlaybookIssue] = Field(default_factory=list)


class Registered(BaseModel):
    path: str
    version: int = Field(description="The version stored (unchanged YAML keeps its version).")
    name: str
    uri: str = Field(description="The resource holding this version's YAML.")


class StepRun(BaseModel):
    step_run_id: str
    step: str
    status: str
    started_at: str | None = None
    finished_at: str | None = None
    attempts: int = 1
    iterations: int | None = None
    error: dict[str, Any] | None = None


class Execution(BaseModel):
    execution_id: str
    playbook_path: str
    playbook_version: int | None = None
    status: str = Field(description="running, paused, completed, failed or cancelled.")
    started_at: str | None = None
    finished_at: str | None = None
    parent_execution_id: str | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    events: int = Field(0, description="Number of events in its log.")
    steps: list[StepRun] = Field(default_factory=list)


class ExecutionStarted(BaseModel):
    execution_id: str
    status: str = Field(description="Status when the call returned (running if still going).")
    finished: bool = Field(description="Whether it completed, failed or was cancelled.")
    playbook_path: str
    playbook_version: int | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    steps: list[StepRun] = Field(default_factory=list)
    uri: str = Field(description="The resource to read its state from later.")


class ExecutionRow(BaseModel):
    execution_id: str
    playbook_path: str
    playbook_version: int | None = None
    status: str
    started_at: str
    finished_at: str | None = None
    parent_execution_id: str | None = None
    error: str | None = None


class ExecutionList(BaseModel):
    executions: list[ExecutionRow] = Field(description="Newest first.")


class EventLog(BaseModel):
    execution_id: str
    events: list[dict[str, Any]] = Field(description="Events in order (seq ascending).")
    next_after_seq: int = Field(description="Pass as after_seq to read the events after these.")


class Cancelled(BaseModel):
    execution_id: str
    status: str


class Hit(Open):
    kind: str = Field(description="failure, step, execution or playbook.")
    score: float = Field(
        description="Similarity, 1 is identical (for similar failures among 20 or more: "
        "the cosine after the mean of all failures is taken out, 0 unrelated)."
    )
    playbook_path: str | None = None
    execution_id: str | None = None
    step: str | None = None
    text: str = ""


class SearchResult(BaseModel):
    query: str
    hits: list[Hit] = Field(description="Best first.")


class SimilarFailures(BaseModel):
    execution_id: str | None = None
    query: str | None = None
    failure: Hit | None = Field(None, description="The execution's own indexed failure.")
    similar: list[Hit] = Field(description="Past failures of other executions, best first.")


class Explanation(Open):
    execution_id: str
    playbook_path: str
    status: str
    failed: bool
    summary: str = Field(description="One paragraph: what failed, the likely cause, since.")
    root_cause: dict[str, Any] | None = None
    causes: list[dict[str, Any]] = Field(default_factory=list)
    similar: list[dict[str, Any]] = Field(default_factory=list)
    suggested_fixes: list[str] = Field(default_factory=list)


class StepStatistics(BaseModel):
    playbook: str
    steps: list[dict[str, Any]] = Field(
        description="Per step: runs, failures by error class, attempts, durations, pools."
    )


class QueryResult(BaseModel):
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    row_count: int


class Proposal(Open):
    id: str
    status: str = Field(description="pending, approved, rejected, applied, rolled_back, ...")
    kind: str = Field(description="retry, timeout, pool, parallelism, ...")
    target: dict[str, Any] = Field(description="playbook, version and step it patches.")
    patch: list[dict[str, Any]]
    evidence: dict[str, Any]
    rationale: str
    diff: str


class ProposalList(BaseModel):
    proposals: list[Proposal] = Field(description="Newest first.")


class Suggestions(BaseModel):
    proposed: list[Proposal] = Field(description="New proposals raised now.")
    pending: list[Proposal] = Field(description="The same change was already waiting.")
    suppressed: list[dict[str, Any]] = Field(
        description="Drafts held back (rejected before, not enough new evidence), with why."
    )
    evaluated: list[dict[str, Any]] = Field(
        description="Applied changes whose effect was measured now; evaluation.verdict is "
        "better, worse, no_change or inconclusive (too few executions ran while the change "
        "was in force to judge it), evaluation.window the versions measured."
    )


class ReviewRequest(BaseModel):
    proposal_id: str
    status: str
    review_url: str = Field(description="The review queue page where a person decides.")
    message: str = Field(description="What to tell the user.")


class PendingApproval(BaseModel):
    approval_id: str
    execution_id: str
    step: str
    prompt: str
    requested_at: str
    approvers: list[str]


class PendingApprovals(BaseModel):
    approvals: list[PendingApproval] = Field(description="Oldest first.")
    note: str = Field(description="Who can decide them, and where.")


class AuthoringContext(BaseModel):
    playbook_schema: str = Field(description="The JSON Schema of the playbook language.")
    tool_kinds: str = Field(description="One line per tool kind: its fields and its result.")
    rules: str = Field(description="The rules of the language in words.")
    similar: list[Hit] = Field(description="Catalog playbooks like the description.")


class DryRunReport(Open):
    passed: bool
    status: str = Field(description="completed, failed, paused, running or invalid.")
    result: Any = None
    error: dict[str, Any] | None = None
    steps: list[dict[str, Any]] = Field(default_factory=list)
    stood_in: list[dict[str, Any]] = Field(
        default_factory=list, description="Each side effect replaced, with its stand-in output."
    )
    warnings: list[str] = Field(default_factory=list)


class Draft(Open):
    generation_id: str
    valid: bool
    ok: bool = Field(description="Valid and its dry run completed.")
    generator: str = Field(description="model or offline.")
    path: str | None = None
    yaml: str
    issues: list[dict[str, Any]] = Field(default_factory=list)
    dry_run: DryRunReport | None = None
    unmapped: list[dict[str, Any]] = Field(
        default_factory=list, description="Parts of the description not turned into steps."
    )
    gate: dict[str, Any] = Field(
        description="gated (a human operator must promote it before it runs), code_tools."
    )
    registered: dict[str, Any] | None = None
    notes: list[str] = Field(default_factory=list)
