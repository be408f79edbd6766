"""The demo's phases, end to end, on a fresh embedded stack of its own.

1. **Set-up**: a fresh demo home under ``$NOETL_HOME/demo/run-<time>`` (``latest``
   points to it), the flaky test service on an ephemeral port, the example playbooks
   registered (:mod:`noetl_agent.demo.examples`).
2. **Before**: every playbook runs ``runs`` times on its first version.
3. **History**: the event log is indexed for search (unless ``NOETL_INDEXER`` is off);
   the failures most similar to one failure, and the explanation of that failure.
4. **Proposals**: the learners are asked for suggestions (as the operator
   ``demo-operator``); each proposal is raised by its learner, an agent.
5. **Review**: the API server with the review page on a local port, and a token for the
   human approver ``demo-reviewer``. With ``auto_approve`` the demo approves one proposal
   per playbook as that reviewer (the first by kind: retry_remove, retry, pool, timeout);
   else it waits for a person to decide on the page.
6. **After**: the playbooks whose proposal was applied run ``runs`` times on the new
   version; the effect of each change is measured (``evaluate_due``).

Every run gets its own home, so a second run shows the same story instead of finding
its proposals applied already; the earlier runs stay for inspection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import NoetlError
from noetl_agent.demo.examples import EXAMPLES, Example
from noetl_agent.demo.report import DemoReport, PlaybookResult, render
from noetl_agent.demo.runs import Batch, run_batch
from noetl_agent.demo.service import Behaviour, FlakyService, serve
from noetl_agent.demo.stack import DemoStack, demo_stack
from noetl_agent.errors import AgentError
from noetl_agent.principals import Principal

if TYPE_CHECKING:
    import uvicorn
    from rich.console import Console

    from engine.runtime.embedded import Engine
    from noetl_agent.history import History
    from noetl_agent.proposals import ProposalService

OPERATOR = Principal("demo-operator", "human", frozenset({"operator"}))
REVIEWER = Principal("demo-reviewer", "human", frozenset({"approver"}))
PRIORITY = ("retry_remove", "retry", "pool", "timeout", "max_in_flight")
RUNS = 40
QUICK_RUNS = 16
POLL_S = 1.0


class DemoError(AgentError):
    """The demo cannot go on as asked (a port taken, a home that cannot be written)."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What the ``demo`` command was asked to do."""

    home: Path  # $NOETL_HOME: the demo's own home goes under it
    runs: int | None = None  # executions per playbook per phase (None: by size)
    quick: bool = False
    port: int = 0  # the API server's port (0: a free one)
    wait_s: float = 600.0  # how long to wait for a person's decisions
    auto_approve: bool = False

    @property
    def executions(self) -> int:
        return self.runs or (QUICK_RUNS if self.quick else RUNS)

    def behaviour(self) -> Behaviour:
        """The service's misbehaviour; ``quick`` fails more often and renders faster, so
        a short run still shows the learners enough."""
        if self.quick:
            return Behaviour(fail_rate=0.45, pool_ms={"small": 120.0, "large": 15.0})
        return Behaviour()


def demo_home(root: Path) -> Path:
    """A new folder ``root/demo/run-<UTC time>`` and ``root/demo/latest`` pointing to it."""
    base = root / "demo"
    stamp = datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S")
    home = base / stamp
    suffix = 1
    try:
        base.mkdir(parents=True, exist_ok=True)
        while home.exists():
            suffix += 1
            home = base / f"{stamp}-{suffix}"
        home.mkdir()
        link = base / f".latest-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(home.name)
        link.replace(base / "latest")
    except OSError as exc:
        raise DemoError(
            f"cannot create the demo's home under {base}: {exc}; set NOETL_HOME to a "
            "folder you can write"
        ) from None
    return home


class Demo:
    """One run of the demo (see the module docstring); ``console`` gets its output."""

    def __init__(self, options: DemoOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.runs = options.executions
        self._socket = _bind(options.port)  # the review page's port, taken before any run

    # ------------------------------------------------------------------ output

    def heading(self, title: str) -> None:
        self.console.print()
        self.console.rule(f"[bold]{title}[/]", align="left")

    def line(self, text: str) -> None:
        self.console.print(text, soft_wrap=True, highlight=False)

    @contextlib.contextmanager
    def progress(self, label: str, total: int) -> Iterator[Callable[[bool], None]]:
        """A live progress bar of ``total`` runs; yields the per-run callback."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        if not self.console.is_terminal:  # a pipe or a file: the result line is enough
            yield lambda ok: None
            return
        failures = [0]
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed[/]"),
            console=self.console,
            transient=True,
        ) as bar:
            task = bar.add_task(label, total=total, failed=0)

            def advance(ok: bool) -> None:
                failures[0] += 0 if ok else 1
                bar.update(task, advance=1, failed=failures[0])

            yield advance

    async def batch(
        self,
        engine: Engine,
        example: Example,
        base_url: str,
        *,
        version: int | None = None,
        first_index: int = 0,
        note: str = "",
    ) -> Batch:
        label = f"{example.path}{note}"
        with self.progress(label, self.runs) as advance:
            batch = await run_batch(
                engine,
                example,
                base_url,
                self.runs,
                version=version,
                first_index=first_index,
                progress=advance,
            )
        extra = f", {batch.mean_wall_s:.2f}s per run"
        colour = "red" if batch.failures else "green"
        self.line(
            f"  {example.path} v{batch.version}{note}: [{colour}]{batch.failures} of "
            f"{batch.runs} failed ({batch.failure_rate:.0%})[/]{extra}"
        )
        return batch

    # ------------------------------------------------------------------ the phases

    async def run(self) -> DemoReport:
        """All phases, then the report (printed and returned); the port is let go after."""
        try:
            return await self._run()
        finally:
            self._socket.close()

    async def _run(self) -> DemoReport:
        started = time.monotonic()
        options = self.options
        home = demo_home(options.home)
        report = DemoReport(
            home=str(home),
            runs=self.runs,
            quick=options.quick,
            auto_approved=options.auto_approve,
            reviewer=REVIEWER.name,
        )
        behaviour = options.behaviour()
        service = FlakyService(behaviour)
        self.heading("1. Set-up")
        self.line(f"demo home: {home} (a fresh one per run; `latest` points to it)")
        pools = sorted({pool for example in EXAMPLES for pool in example.pools})
        with serve(service) as base_url:
            self.line(
                f"flaky test service: {base_url} - /prices answers 503 to "
                f"{behaviour.fail_rate:.0%} of requests (seeded), /profile/mallory always "
                "401, /render is slow"
            )
            self.line(
                "pools: every pool runs in this process; the service stands in for their "
                "hardware and answers /render in "
                + ", ".join(f"{ms:g} ms on '{name}'" for name, ms in behaviour.pool_ms.items())
                + " (each pool's workers name their pool in a header the playbook cannot set)"
            )
            async with demo_stack(home, pools) as stack:
                await self._loop(stack, base_url, report)
        report.service = service.summary()
        report.seconds = time.monotonic() - started
        self.heading("Report")
        render(report, self.console)
        return report

    async def _loop(self, stack: DemoStack, base_url: str, report: DemoReport) -> None:
        from noetl_agent.history import embedded_history, indexing_enabled
        from noetl_agent.policy_settings import PolicySettings
        from noetl_agent.proposals import ProposalService

        engine = stack.engine
        earlier_versions: dict[str, int] = {}
        for example in EXAMPLES:
            earlier = example.earlier_content()
            if earlier is not None:
                entry = await engine.register(earlier)
                earlier_versions[entry.path] = entry.version
                self.line(
                    f"registered {entry.path} v{entry.version} (step on '{example.earlier_pool}')"
                )
            entry = await engine.register(example.content)
            self.line(f"registered {entry.path} v{entry.version}")

        self.heading(f"2. Before: {self.runs} runs of each playbook")
        for example in EXAMPLES:
            if example.path in earlier_versions:
                await self.batch(
                    engine,
                    example,
                    base_url,
                    version=earlier_versions[example.path],
                    note=f" on '{example.earlier_pool}'",
                )
            before = await self.batch(engine, example, base_url)
            report.playbooks.append(PlaybookResult(example.path, before))

        history = embedded_history(engine.events, engine.catalog, stack.home)
        searchable = await self._index(history, report, indexing_enabled())
        failed = next(
            (r.before.first_failure() for r in report.playbooks if r.before.failures), None
        )
        if failed is not None:
            await self._similar(history if searchable else None, failed)
            await self._explain(engine, history if searchable else None, failed)

        settings = PolicySettings.from_env()
        settings = replace(
            settings,
            evaluate_after=self.runs,
            min_samples=min(settings.min_samples, max(3, self.runs // 4)),
        )
        proposals = ProposalService(engine, history=history, settings=settings)
        await self._suggest(proposals)

        async with self._server(stack, history, report) as token:
            self.heading("5. Review")
            self.line(f"review page: [bold]{report.review_url}[/]")
            self.line(
                f"log in with the token of the human approver '{REVIEWER.name}' "
                f"(created for this demo home):\n  {token}"
            )
            if self.options.auto_approve:
                await self._auto_approve(proposals)
            else:
                await self._wait(proposals)
            await self._after(engine, proposals, base_url, report)
        report.proposals = await proposals.list()

    async def _index(self, history: History, report: DemoReport, enabled: bool) -> bool:
        from learning.errors import LearningError

        self.heading("3. Learning from the history")
        if not enabled:
            report.indexing = "off (NOETL_INDEXER=off)"
            self.line(
                "search index: off (NOETL_INDEXER=off); similar failures are not searched, "
                "the explanation ranks causes by rules alone"
            )
            return False
        self.line("indexing the event log for search (the model loads once, a few seconds)")
        try:
            indexed = await history.index()
        except (LearningError, NoetlError, OSError) as exc:
            report.indexing = f"unavailable: {exc}"
            self.line(
                f"[yellow]search index unavailable:[/] {exc}; similar failures are skipped "
                "(set NOETL_INDEXER=off to skip indexing)"
            )
            return False
        report.indexing = f"{indexed.documents} documents from {indexed.events} events"
        self.line(f"indexed {indexed.documents} documents from {indexed.events} events")
        return True

    async def _similar(self, history: History | None, execution_id: str) -> None:
        from learning.errors import LearningError

        self.line(f"[bold]similar past failures[/] to execution {execution_id}:")
        if history is None:
            self.line("  (the search index is off or unavailable: not searched)")
            return
        try:
            hits = await history.similar_failures(execution_id=execution_id, k=3)
        except (LearningError, NoetlError) as exc:
            self.line(f"  not searched: {exc}")
            return
        if not hits:
            self.line("  none indexed yet")
        for hit in hits:
            first = hit.text.splitlines()[0] if hit.text else ""
            self.line(
                f"  {hit.score:.2f}  {hit.playbook_path} step {hit.step}  "
                f"{hit.execution_id}  {first[:80]}"
            )

    async def _explain(self, engine: Engine, history: History | None, execution_id: str) -> None:
        from noetl_agent.explain import Explainer

        explainer = Explainer(engine.events, engine.catalog, history=history)
        explanation = await explainer.explain(execution_id, use_model=False)
        self.line(f"[bold]explanation[/] of {execution_id}: {explanation.summary}")
        cause = explanation.root_cause
        if cause is not None:
            self.line(f"  likely cause: {cause.title} ({cause.score:.0%} of the evidence)")
        for fix in explanation.suggested_fixes[:2]:
            self.line(f"  fix: {fix}")
        for note in explanation.notes:
            self.line(f"  [dim]note: {note}[/]")

    async def _suggest(self, proposals: ProposalService) -> None:
        self.heading("4. Proposals")
        self.line(f"asking the learners as '{OPERATOR.name}' (operator)")
        raised: list[dict[str, Any]] = []
        for example in EXAMPLES:
            suggested = await proposals.suggest(OPERATOR, example.path)
            raised += [*suggested.proposed, *suggested.pending]
        if not raised:
            self.line("no proposal: the learners found nothing worth changing")
        for item in raised:
            target = item["target"]
            rationale = str(item.get("rationale") or "").split(": ")[0]
            self.line(
                f"  {item['id']}  [bold]{item['kind']}[/] {target['playbook']} "
                f"v{target['version']} step {target['step']}, by "
                f"{item['proposed_by']['name']}: {rationale}"
            )

    @contextlib.asynccontextmanager
    async def _server(
        self, stack: DemoStack, history: History, report: DemoReport
    ) -> AsyncIterator[str]:
        """Serve the API (with the review page) on the demo's engine; yield the reviewer's
        token. The server stops when the demo ends."""
        from noetl_agent.api.app import create_app
        from noetl_agent.tokens import SqliteTokenStore

        tokens = SqliteTokenStore(stack.db)
        token = await tokens.create(REVIEWER.name, REVIEWER.kind, sorted(REVIEWER.roles))
        app = create_app(stack.engine, tokens, history=history)
        sock = self._socket
        port = sock.getsockname()[1]
        server = _quiet_server(app)
        task = asyncio.create_task(server.serve(sockets=[sock]), name="demo-api")
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if task.done():
            sock.close()
            raise DemoError(f"the review page's server did not start: {task.exception()}")
        report.review_url = f"http://127.0.0.1:{port}/review/"
        try:
            yield token
        finally:
            server.should_exit = True
            # However the page's server ends (it had its say in its log), the demo's report
            # stands: only wait for it to let go of its port.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=10)
            sock.close()

    async def _auto_approve(self, proposals: ProposalService) -> None:
        self.line(
            f"--auto-approve-as-demo-reviewer: approving one proposal per playbook as the "
            f"human '{REVIEWER.name}' (not the proposer)"
        )
        pending = await proposals.list("pending")
        for example in EXAMPLES:
            mine = [
                p
                for p in pending
                if p["target"]["playbook"] == example.path and p["kind"] in PRIORITY
            ]
            if not mine:
                continue
            chosen = min(mine, key=lambda p: PRIORITY.index(p["kind"]))
            try:
                decided = await proposals.decide(
                    chosen["id"],
                    REVIEWER,
                    True,
                    comment="approved by the demo reviewer to show the measured effect",
                )
            except NoetlError as exc:
                self.line(f"  [yellow]{chosen['id']} not approved:[/] {exc}")
                continue
            applied = decided.get("applied_version")
            where = f"applied as v{applied}" if applied else f"status {decided['status']}"
            self.line(f"  approved {chosen['id']} ({chosen['kind']} on {example.path}): {where}")

    async def _wait(self, proposals: ProposalService) -> None:
        """Wait until nothing is pending, the time is up, or Ctrl-C."""
        total = max(0.0, self.options.wait_s)
        if total <= 0:
            self.line("not waiting (--wait 0): the proposals stay pending")
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGINT)
        handled = _on_ctrl_c(loop, stop.set)
        from rich.live import Live

        deadline = time.monotonic() + total
        reason = "time is up"
        self.line(
            f"waiting up to {total:g}s for decisions on the review page (--wait; Ctrl-C "
            "stops waiting)"
        )
        try:
            with Live(console=self.console, transient=True, refresh_per_second=4) as live:
                while True:
                    pending = len(await proposals.list("pending"))
                    left = deadline - time.monotonic()
                    if pending == 0:
                        reason = "nothing is pending any more"
                        break
                    if left <= 0:
                        break
                    minutes, seconds = divmod(int(left), 60)
                    live.update(
                        f"waiting for decisions: {pending} pending, "
                        f"{minutes}:{seconds:02d} left (Ctrl-C to stop)"
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=min(POLL_S, left))
                    if stop.is_set():
                        reason = "stopped with Ctrl-C"
                        break
        finally:
            if handled:  # give Ctrl-C back to whoever had it (the CLI's runner)
                loop.remove_signal_handler(signal.SIGINT)
                signal.signal(signal.SIGINT, previous)
        self.line(f"stopped waiting: {reason}")

    async def _after(
        self, engine: Engine, proposals: ProposalService, base_url: str, report: DemoReport
    ) -> None:
        applied = {
            p["target"]["playbook"]: p
            for p in await proposals.list("applied")
            if not p.get("rolls_back")
        }
        self.heading("6. After: the approved versions")
        if not applied:
            self.line("nothing was approved: no new version to run")
            return
        for result in report.playbooks:
            proposal = applied.get(result.path)
            if proposal is None:
                self.line(f"  {result.path}: no approved change, not run again")
                continue
            example = next(e for e in EXAMPLES if e.path == result.path)
            result.approved = str(proposal["id"])
            result.after = await self.batch(
                engine,
                example,
                base_url,
                version=proposal["applied_version"],
                first_index=self.runs,
            )
        for item in await proposals.evaluate_due(OPERATOR):
            evaluation = item.get("evaluation") or {}
            entry = {
                "proposal": item["id"],
                "playbook": item["target"]["playbook"],
                "kind": item["kind"],
                "verdict": evaluation.get("verdict"),
                "summary": evaluation.get("summary"),
                "rollback_proposal_id": evaluation.get("rollback_proposal_id"),
            }
            report.evaluations.append(entry)
            self.line(
                f"  measured {entry['proposal']} ({entry['kind']} on {entry['playbook']}): "
                f"[bold]{entry['verdict']}[/] - {entry['summary']}"
            )


def _quiet_server(app: Any) -> uvicorn.Server:
    """A uvicorn server for ``app`` that logs only warnings and leaves the signals to the
    demo (Ctrl-C while waiting stops the wait, not the server)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
    return Server(config)


def _bind(port: int) -> socket.socket:
    """A socket bound to ``port`` of 127.0.0.1 (0: a free one); ``DemoError`` when taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise DemoError(
            f"cannot serve the review page on port {port}: {exc.strerror}; pass another "
            "--port, or --port 0 for a free one"
        ) from None
    return sock


async def run_demo(options: DemoOptions, console: Console) -> DemoReport:
    """Run the demo with ``options``, printing to ``console``; the report at the end."""
    return await Demo(options, console).run()


def _on_ctrl_c(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> bool:
    """Make Ctrl-C call ``callback`` instead of raising ``KeyboardInterrupt``; False where
    that cannot be done: off the main thread, or on a loop without signal handlers (such
    as Windows' proactor loop), where Ctrl-C keeps raising, which the CLI turns into a
    clean exit."""
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        loop.add_signal_handler(signal.SIGINT, callback)
    except NotImplementedError:
        return False
    return True
