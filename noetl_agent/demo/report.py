"""What the demo did, as a short report: failure rate before and after per playbook,
the proposals and their decisions, the measured effects and where to look next."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from noetl_agent.demo.runs import Batch

if TYPE_CHECKING:
    from rich.console import Console


@dataclass
class PlaybookResult:
    """One example playbook through the demo."""

    path: str
    before: Batch
    after: Batch | None = None
    approved: str | None = None  # the id of the proposal applied to it

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "before": self.before.to_dict(),
            "after": self.after.to_dict() if self.after else None,
            "approved_proposal": self.approved,
        }


def _rate(batches: list[Batch]) -> float | None:
    runs = sum(batch.runs for batch in batches)
    return sum(batch.failures for batch in batches) / runs if runs else None


def _brief(proposal: dict[str, Any]) -> dict[str, Any]:
    target = proposal.get("target") or {}
    decisions = proposal.get("decisions") or []
    return {
        "id": proposal.get("id"),
        "kind": proposal.get("kind"),
        "playbook": target.get("playbook"),
        "version": target.get("version"),
        "step": target.get("step"),
        "status": proposal.get("status"),
        "proposed_by": (proposal.get("proposed_by") or {}).get("name"),
        "decided_by": [
            {
                "name": d.get("decided_by"),
                "kind": d.get("kind"),
                "approved": d.get("approved"),
            }
            for d in decisions
        ],
        "applied_version": proposal.get("applied_version"),
        "rationale": proposal.get("rationale"),
    }


@dataclass
class DemoReport:
    """Everything the demo shows at its end (``to_dict`` is the ``--json`` line)."""

    home: str
    runs: int
    quick: bool
    auto_approved: bool
    reviewer: str
    review_url: str | None = None
    service: dict[str, dict[str, int]] = field(default_factory=dict)
    indexing: str = ""
    playbooks: list[PlaybookResult] = field(default_factory=list)
    proposals: list[dict[str, Any]] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def by_status(self, status: str) -> list[dict[str, Any]]:
        return [p for p in self.proposals if p.get("status") == status]

    def approved(self) -> list[dict[str, Any]]:
        """Proposals a reviewer approved (applied, or approved and waiting for quorum)."""
        return [
            p for p in self.proposals if any(d.get("approved") for d in p.get("decisions") or [])
        ]

    def failure_rates(self) -> dict[str, float | None]:
        """Failure rate over the playbooks that ran again, before and after."""
        rerun = [result for result in self.playbooks if result.after is not None]
        return {
            "before": _rate([r.before for r in rerun]),
            "after": _rate([r.after for r in rerun if r.after is not None]),
        }

    def next_steps(self) -> list[str]:
        home = self.home
        steps = [f"NOETL_HOME={home} noetl-agent proposals list"]
        if self.by_status("pending"):
            steps.append(
                f"NOETL_HOME={home} noetl-agent proposals approve ID (or reject ID "
                "--comment WHY), then run its playbook again to see the effect"
            )
        return [
            *steps,
            f"NOETL_HOME={home} noetl-agent server --port 8080, then open "
            "http://127.0.0.1:8080/review/ and log in with the demo reviewer's token",
            "README: 'A five-minute tour', 'Policy proposals and the review page'",
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "home": self.home,
            "runs": self.runs,
            "quick": self.quick,
            "seconds": round(self.seconds, 1),
            "review_url": self.review_url,
            "reviewer": self.reviewer,
            "auto_approved": self.auto_approved,
            "indexing": self.indexing,
            "service": self.service,
            "failure_rate": self.failure_rates(),
            "playbooks": [result.to_dict() for result in self.playbooks],
            "proposals": {
                "raised": len(self.proposals),
                "approved": len(self.approved()),
                "applied": len(self.by_status("applied")),
                "pending": len(self.by_status("pending")),
                "items": [_brief(p) for p in self.proposals],
            },
            "evaluations": self.evaluations,
            "next": self.next_steps(),
        }


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _failed(before: Batch, after: Batch | None) -> str:
    text = f"{before.failure_rate:.0%}"
    return text if after is None else f"{text} -> {after.failure_rate:.0%}"


def _change(before: float | None, after: float | None, unit: str, scale: float = 1.0) -> str:
    if before is None:
        return "-"
    text = f"{unit}{before * scale:.2g}"
    return text if after is None else f"{text} -> {unit}{after * scale:.2g}"


def render(report: DemoReport, console: Console) -> None:
    """Print the report: a table of the playbooks, then proposals, verdicts, next steps."""
    from rich.table import Column, Table

    kinds = {p.get("id"): p.get("kind") for p in report.proposals}
    table = Table(
        Column("playbook", no_wrap=True),
        "change",
        f"failed (of {report.runs})",
        "s per run",
        "$ per 1k runs",
    )
    for result in report.playbooks:
        before, after = result.before, result.after
        change = "none applied"
        if after is not None:
            change = f"{kinds.get(result.approved)} v{before.version}->v{after.version}"
        table.add_row(
            result.path,
            change,
            _failed(before, after),
            _change(before.mean_wall_s, after.mean_wall_s if after else None, ""),
            _change(before.mean_cost, after.mean_cost if after else None, "$", 1000.0),
        )
    console.print(table)
    rates = report.failure_rates()
    if rates["after"] is not None:
        console.print(
            f"failure rate of the playbooks run again: [bold]{_percent(rates['before'])}[/] "
            f"before, [bold]{_percent(rates['after'])}[/] after"
        )
    approved = report.approved()
    deciders = sorted({d["decided_by"] for p in approved for d in p.get("decisions") or []})
    pending = report.by_status("pending")
    console.print(
        f"proposals: {len(report.proposals)} raised, {len(approved)} approved"
        + (f" by {', '.join(deciders)}" if deciders else "")
        + f", {len(pending)} pending, {len(report.by_status('stale'))} stale (their "
        "playbook moved on)",
        soft_wrap=True,
    )
    for item in pending:
        target = item.get("target") or {}
        console.print(f"  pending: {item['id']} {item['kind']} on {target.get('playbook')}")
    for evaluation in report.evaluations:
        console.print(
            f"  measured: {evaluation['kind']} on {evaluation['playbook']}: "
            f"[bold]{evaluation['verdict']}[/]"
        )
    console.print("where to look next:")
    if report.review_url:
        console.print(f"  review page (served while the demo ran): {report.review_url}")
    for step in report.next_steps():
        console.print(f"  {step}", soft_wrap=True)
