"""`noetl-agent demo`: the closed loop end to end on a fresh embedded stack of its own.

A local flaky test service, example playbooks run many times, similar failures and an
explanation, retry and hardware proposals, the review page on a local port and, with
``--auto-approve-as-demo-reviewer``, the approved versions run again and measured. The
demo's home is a new folder ``$NOETL_HOME/demo/run-<time>`` per run (``latest`` points to
the newest), so running it again shows the same story. ``make run`` runs it.
"""

from __future__ import annotations

import typer

from noetl_agent.cli.app import _principal, _print_json, _run, app


@app.command()
def demo(
    runs: int | None = typer.Option(
        None,
        "--runs",
        min=8,
        help="Executions per playbook per phase (default 40; 16 with --quick).",
        show_default=False,
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Small sizes and a livelier service: about half a minute."
    ),
    port: int = typer.Option(
        0, "--port", min=0, max=65535, help="Port of the review page (0: a free one)."
    ),
    wait: float = typer.Option(
        600.0,
        "--wait",
        min=0.0,
        help="Seconds to wait for decisions on the review page (0: do not wait).",
    ),
    auto_approve: bool = typer.Option(
        False,
        "--auto-approve-as-demo-reviewer",
        help="Approve one proposal per playbook as the human demo reviewer instead of "
        "waiting for a person.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Also print the report as JSON, as the last line."
    ),
) -> None:
    """Show the closed loop: flaky runs, proposals, review, and the measured effect."""
    _principal().require("admin", "run the demo")
    from rich.console import Console

    from noetl_agent.config import noetl_home
    from noetl_agent.demo import DemoOptions, run_demo

    options = DemoOptions(
        home=noetl_home(),
        runs=runs,
        quick=quick,
        port=port,
        wait_s=wait,
        auto_approve=auto_approve,
    )

    async def go() -> dict[str, object]:
        report = await run_demo(options, Console(highlight=False))
        return report.to_dict()

    result = _run(go, "demo interrupted; what it ran so far is in $NOETL_HOME/demo/latest")
    if as_json:
        _print_json(result)
