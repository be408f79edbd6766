"""Engine benchmark: embedded ``noetl-agent run`` side by side with its peers.

Every figure is the whole-process wall time of one command, the median over
``--runs`` timed runs after ``--warmup`` untimed ones, on the playbooks in the
shared ``bench-workloads`` folder (seq1, seq40, loop200, fanout20, each with python
and with shell steps).

Runners:

* ``ours``: ``noetl-agent run FILE --json`` with a fresh ``NOETL_HOME``; success is
  exit code 0 and ``status == "completed"`` in the JSON line it prints last.
* ``noetl``: upstream NoETL (``noetl run FILE -r local``); its local runtime cannot
  run python tools, so it only takes the shell workloads; success is exit code 0
  without an error or "not supported" message.
* ``prefect``: ``prefect_flow.py MODE N`` with an ephemeral local server and a fresh
  ``PREFECT_HOME``; it does the python workloads' work; success is exit code 0 and
  ``result_ok`` in its JSON line, which also gives in-flow times.

Shell workloads are checked once per runner for the work actually done: a copy of
the playbook appends each command's output to a file and the lines are counted.
A runner that runs a different number of commands is timed, but its ratio to ours
is not reported (the work is not identical).

Derived figures: per-step overhead (T40 - T1) / 39 from seq40 and seq1, per loop
iteration (T200 - T1) / 199 from loop200 and seq1, per fan-out branch
(T20 - T1) / 21 from fanout20 and seq1 (20 branches and the join), and process
start T1 (seq1). The Markdown report goes into ``evals/RESULTS.md`` between the
``engine`` markers; the rest of that file is left as it is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from evals.bench.peers import NOETL, PREFECT, Peer, PeerInstallError
from evals.results import RESULTS, write_section

REPO = Path(__file__).resolve().parents[2]
MARK_START = "<!-- engine:start -->"
MARK_END = "<!-- engine:end -->"

KINDS = ("python", "shell")
RUNNERS = ("ours", "noetl", "prefect")

# Goals from the issue.
GOAL_PY_STEP_S = 0.001
GOAL_START_S = 0.5


@dataclass(frozen=True)
class Workload:
    """One benchmark playbook family: ``<name>_python.yaml`` and ``<name>_shell.yaml``."""

    name: str
    commands: int  # shell commands a faithful run executes
    prefect_mode: str
    prefect_n: int


WORKLOADS = (
    Workload("seq1", 1, "seq", 1),
    Workload("seq40", 40, "seq", 40),
    Workload("loop200", 202, "loop", 200),
    Workload("fanout20", 22, "fanout", 20),
)


def workloads_dir() -> Path:
    """Folder holding the benchmark playbooks and ``prefect_flow.py``."""
    default = Path(__file__).resolve().parents[3] / "shared" / "bench-workloads"
    if default.is_dir():
        return default
    env = os.environ.get("NOETL_BENCH_WORKLOADS")
    if env and Path(env).is_dir():
        return Path(env)
    raise SystemExit(
        f"benchmark workloads not found at {default}; set NOETL_BENCH_WORKLOADS to their folder"
    )


@dataclass
class RunResult:
    """Outcome of one process run."""

    ok: bool
    wall_s: float
    error: str = ""
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class Cell:
    """All runs of one runner on one workload."""

    runner: str
    workload: str
    kind: str
    runs: list[RunResult] = field(default_factory=list)
    skipped: str = ""
    work_check: str = ""
    work_identical: bool = True

    @property
    def failures(self) -> list[RunResult]:
        """Runs that did not succeed."""
        return [r for r in self.runs if not r.ok]

    @property
    def ok(self) -> bool:
        """Whether every run succeeded (and there was at least one)."""
        return bool(self.runs) and not self.failures and not self.skipped

    def median(self, key: str | None = None) -> float | None:
        """Median wall time, or of an extra figure, over the runs; None on failure."""
        if not self.ok:
            return None
        if key is None:
            return statistics.median(r.wall_s for r in self.runs)
        values = [r.extra[key] for r in self.runs if key in r.extra]
        return statistics.median(values) if values else None

    def status(self) -> str:
        """Short description of a cell that has no time to show."""
        if self.skipped:
            return self.skipped
        if not self.runs:
            return "not run"
        bad = self.failures
        return f"FAIL {len(bad)}/{len(self.runs)}: {bad[0].error}"


def _tail(text: str, lines: int = 3, width: int = 300) -> str:
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)[-width:]


def _last_json(stdout: str) -> dict[str, object] | None:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None


def _timed(
    cmd: Sequence[str], env: dict[str, str], cwd: Path, timeout: float
) -> tuple[subprocess.CompletedProcess[str] | None, float, str]:
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            list(cmd),
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return None, time.perf_counter() - start, f"timed out after {timeout:.0f} s"
    except OSError as exc:
        return None, time.perf_counter() - start, f"could not start: {exc}"
    return proc, time.perf_counter() - start, ""


class Runner:
    """A way to run one workload as a fresh process."""

    name = ""
    kinds: tuple[str, ...] = KINDS

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.unavailable = ""

    def command(self, playbook: Path, workload: Workload) -> list[str]:
        """Command line for one run."""
        raise NotImplementedError

    def environment(self, home: Path) -> dict[str, str]:
        """Process environment for runs that share the state folder ``home``."""
        return dict(os.environ)

    def judge(self, proc: subprocess.CompletedProcess[str]) -> RunResult:
        """Turn a finished process into a result (wall time filled in by the caller)."""
        raise NotImplementedError

    def run(self, playbook: Path, workload: Workload, home: Path) -> RunResult:
        """Run one workload once and time the whole process."""
        proc, wall, error = _timed(
            self.command(playbook, workload), self.environment(home), home, self.timeout
        )
        if proc is None:
            return RunResult(False, wall, error)
        result = self.judge(proc)
        result.wall_s = wall
        return result


class Ours(Runner):
    """``noetl-agent run FILE --json`` from this project's environment."""

    name = "ours"

    def __init__(self, timeout: float) -> None:
        super().__init__(timeout)
        self.exe = self._find()
        if self.exe is None:
            self.unavailable = "noetl-agent CLI not found (run `make install`)"
        else:
            self.unavailable = self._probe(self.exe)

    @staticmethod
    def _find() -> Path | None:
        for candidate in (
            Path(sys.executable).parent / "noetl-agent",
            REPO / ".venv" / "bin" / "noetl-agent",
        ):
            if candidate.exists():
                return candidate
        found = shutil.which("noetl-agent")
        return Path(found) if found else None

    def _probe(self, exe: Path) -> str:
        with tempfile.TemporaryDirectory(prefix="bench-ours-") as home:
            proc, _, error = _timed(
                [str(exe), "run", "--help"], self.environment(Path(home)), REPO, self.timeout
            )
        if proc is None:
            return f"noetl-agent CLI unusable: {error}"
        if proc.returncode != 0:
            return f"noetl-agent CLI unusable: {_tail(proc.stderr or proc.stdout, 1)}"
        return ""

    def command(self, playbook: Path, workload: Workload) -> list[str]:
        """``noetl-agent run FILE --json``."""
        assert self.exe is not None
        return [str(self.exe), "run", str(playbook), "--json"]

    def environment(self, home: Path) -> dict[str, str]:
        """Fresh ``NOETL_HOME`` per run set-up."""
        env = dict(os.environ)
        env["NOETL_HOME"] = str(home)
        return env

    def judge(self, proc: subprocess.CompletedProcess[str]) -> RunResult:
        """Exit 0 and ``status == "completed"``."""
        doc = _last_json(proc.stdout)
        if doc is None:
            detail = _tail(proc.stderr or proc.stdout)
            return RunResult(False, 0.0, f"exit {proc.returncode}, no JSON line: {detail}")
        status = doc.get("status")
        if proc.returncode != 0 or status != "completed":
            err = doc.get("error") or _tail(proc.stderr)
            return RunResult(False, 0.0, f"exit {proc.returncode}, status {status}: {err}")
        return RunResult(True, 0.0)


class NoetlPeer(Runner):
    """Upstream NoETL, local runtime: ``noetl run FILE -r local``."""

    name = "noetl"
    kinds = ("shell",)

    def __init__(self, timeout: float, peer: Peer = NOETL) -> None:
        super().__init__(timeout)
        self.peer = peer

    def command(self, playbook: Path, workload: Workload) -> list[str]:
        """``noetl run FILE -r local``."""
        return [str(self.peer.bin("noetl")), "run", str(playbook), "-r", "local"]

    def environment(self, home: Path) -> dict[str, str]:
        """Separate home so that no user context or config is picked up."""
        env = dict(os.environ)
        env["HOME"] = str(home)
        env["NOETL_HOME"] = str(home)
        return env

    def judge(self, proc: subprocess.CompletedProcess[str]) -> RunResult:
        """Exit 0, and no error or unsupported-tool message."""
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            return RunResult(False, 0.0, f"exit {proc.returncode}: {_error_line(output)}")
        if "not supported" in output:
            return RunResult(False, 0.0, "tool not supported in local runtime")
        if re.search(r"^Error:", output, re.MULTILINE):
            return RunResult(False, 0.0, _error_line(output))
        return RunResult(True, 0.0)


def _error_line(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("Error:"):
            return line.strip()[:300]
    return _tail(output)


class PrefectPeer(Runner):
    """Prefect 3 flow doing the python workloads' work, ephemeral local server."""

    name = "prefect"
    kinds = ("python",)

    def __init__(self, timeout: float, flow: Path, peer: Peer = PREFECT) -> None:
        super().__init__(timeout)
        self.peer = peer
        self.flow = flow

    def command(self, playbook: Path, workload: Workload) -> list[str]:
        """``python prefect_flow.py MODE N``."""
        return [
            str(self.peer.python),
            str(self.flow),
            workload.prefect_mode,
            str(workload.prefect_n),
        ]

    def environment(self, home: Path) -> dict[str, str]:
        """Own ``PREFECT_HOME``, no API URL (ephemeral server), no analytics."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env["PREFECT_HOME"] = str(home)
        env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        return env

    def judge(self, proc: subprocess.CompletedProcess[str]) -> RunResult:
        """Exit 0 and ``result_ok`` in the flow's JSON line."""
        doc = _last_json(proc.stdout)
        if proc.returncode != 0 or doc is None:
            return RunResult(False, 0.0, f"exit {proc.returncode}: {_tail(proc.stderr)}")
        if doc.get("result_ok") is not True:
            return RunResult(False, 0.0, f"result_ok is {doc.get('result_ok')!r}")
        extra = {
            k: float(v)
            for k in ("in_flow_s", "body_s", "import_s")
            if isinstance((v := doc.get(k)), int | float)
        }
        return RunResult(True, 0.0, extra=extra)


# --------------------------------------------------------------------------- work check

_ECHO = re.compile(r'^(\s*-\s*)"echo ([^"]*)"\s*$')


def probe_playbook(source: Path, target: Path, sink: Path) -> None:
    """Copy a shell playbook so that every ``echo`` also appends to ``sink``."""
    lines = []
    for line in source.read_text().splitlines():
        match = _ECHO.match(line)
        if match:
            line = f'{match.group(1)}"echo {match.group(2)} >> {sink}"'
        lines.append(line)
    target.write_text("\n".join(lines) + "\n")


def work_check(runner: Runner, workload: Workload, source: Path) -> tuple[str, bool]:
    """Run a probe copy once and count the shell commands that really ran."""
    with tempfile.TemporaryDirectory(prefix=f"bench-probe-{runner.name}-") as tmp:
        home = Path(tmp)
        sink = home / "out.txt"
        playbook = home / source.name
        probe_playbook(source, playbook, sink)
        result = runner.run(playbook, workload, home)
        if not result.ok:
            return f"probe failed: {result.error}", False
        lines = sink.read_text().splitlines() if sink.exists() else []
    ran = len(lines)
    literal = sum("{{" in ln for ln in lines)
    if ran == workload.commands and not literal:
        return f"{ran}/{workload.commands} commands", True
    note = f"ran {ran} commands, expected {workload.commands}"
    if literal:
        note += f"; {literal} with unrendered templates"
    return note, False


# --------------------------------------------------------------------------- measuring


@contextmanager
def _homes() -> Iterator[Callable[[str], Path]]:
    with tempfile.TemporaryDirectory(prefix="noetl-bench-") as root:
        counter = iter(range(1_000_000))

        def make(label: str) -> Path:
            path = Path(root) / f"{label}-{next(counter)}"
            path.mkdir()
            return path

        yield make


def measure(
    runners: list[Runner],
    folder: Path,
    runs: int,
    warmup: int,
    console: Console,
) -> dict[tuple[str, str, str], Cell]:
    """Run every workload on every runner; runs interleave across runners."""
    cells: dict[tuple[str, str, str], Cell] = {}
    with _homes() as new_home:
        for workload in WORKLOADS:
            for kind in KINDS:
                playbook = folder / f"{workload.name}_{kind}.yaml"
                active: list[tuple[Runner, Cell, Path]] = []
                for runner in runners:
                    if kind not in runner.kinds:
                        continue
                    cell = Cell(runner.name, workload.name, kind)
                    cells[(runner.name, workload.name, kind)] = cell
                    if runner.unavailable:
                        cell.skipped = runner.unavailable
                        continue
                    home = new_home(f"{runner.name}-{workload.name}-{kind}")
                    console.print(f"[dim]{workload.name}_{kind}: {runner.name} warm-up[/dim]")
                    failed = ""
                    for _ in range(warmup):
                        result = runner.run(playbook, workload, home)
                        if not result.ok:
                            failed = result.error
                            break
                    if failed:
                        cell.runs.append(RunResult(False, 0.0, f"warm-up: {failed}"))
                        continue
                    if kind == "shell":
                        cell.work_check, cell.work_identical = work_check(
                            runner, workload, playbook
                        )
                    active.append((runner, cell, home))
                for i in range(runs):
                    for runner, cell, home in active:
                        result = runner.run(playbook, workload, home)
                        cell.runs.append(result)
                        shown = f"{result.wall_s:.3f} s" if result.ok else result.error
                        console.print(
                            f"[dim]{workload.name}_{kind}: {runner.name} run {i + 1}/{runs}: "
                            f"{shown}[/dim]"
                        )
    return cells


# --------------------------------------------------------------------------- figures


@dataclass
class Derived:
    """Overheads derived from one runner's medians for one step kind."""

    start: float | None
    per_step: float | None
    per_iter: float | None
    per_branch: float | None


def _sub(a: float | None, b: float | None, n: int) -> float | None:
    return None if a is None or b is None else (a - b) / n


def derive(
    cells: dict[tuple[str, str, str], Cell], runner: str, kind: str, key: str | None = None
) -> Derived:
    """Start, per-step, per-iteration and per-branch figures from the medians."""

    def med(workload: str) -> float | None:
        cell = cells.get((runner, workload, kind))
        return cell.median(key) if cell else None

    t1 = med("seq1")
    return Derived(
        start=t1,
        per_step=_sub(med("seq40"), t1, 39),
        per_iter=_sub(med("loop200"), t1, 199),
        per_branch=_sub(med("fanout20"), t1, 21),
    )


def _comparable(cells: dict[tuple[str, str, str], Cell], runner: str, kind: str) -> set[str]:
    return {
        w.name
        for w in WORKLOADS
        if (c := cells.get((runner, w.name, kind))) is not None and c.ok and c.work_identical
    }


def fmt_s(value: float | None) -> str:
    """Seconds with millisecond resolution."""
    return "—" if value is None else f"{value:.3f} s"


def fmt_ms(value: float | None) -> str:
    """Milliseconds, two decimals."""
    return "—" if value is None else f"{value * 1000:.2f} ms"


def fmt_ratio(ours: float | None, peer: float | None) -> str:
    """Ours divided by the peer; below 1 means ours is faster."""
    if ours is None or peer is None or peer <= 0 or ours < 0:
        return "—"
    return f"{ours / peer:.2f}x"


@dataclass
class Report:
    """Tables shared by the console and the Markdown output."""

    tables: list[tuple[str, list[str], list[list[str]]]]
    notes: list[str]


def build_report(cells: dict[tuple[str, str, str], Cell], runners: list[str]) -> Report:
    """Turn the measured cells into titled tables and notes."""

    def cell_text(runner: str, workload: str, kind: str, key: str | None = None) -> str:
        cell = cells.get((runner, workload, kind))
        if cell is None:
            return "—"
        value = cell.median(key)
        if value is None:
            return "FAIL" if cell.runs else "skipped"
        mark = "" if cell.work_identical else " ≠"
        return fmt_s(value) + mark

    tables: list[tuple[str, list[str], list[list[str]]]] = []
    notes: list[str] = []
    has = set(runners)

    # Goals
    ours_py = derive(cells, "ours", "python")
    ours_sh = derive(cells, "ours", "shell")
    noetl_sh = derive(cells, "noetl", "shell")

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "FAIL")

    noetl_ok = {"seq1", "seq40"} <= _comparable(cells, "noetl", "shell")
    shell_goal: bool | None = None
    if ours_sh.per_step is not None and noetl_sh.per_step is not None and noetl_ok:
        shell_goal = ours_sh.per_step < noetl_sh.per_step
    goals = [
        [
            "Per-step overhead, python steps",
            "< 1 ms",
            fmt_ms(ours_py.per_step),
            verdict(None if ours_py.per_step is None else ours_py.per_step < GOAL_PY_STEP_S),
        ],
        [
            "Per-step overhead, shell steps",
            f"< NoETL's ({fmt_ms(noetl_sh.per_step) if noetl_ok else 'n/a'})",
            fmt_ms(ours_sh.per_step),
            verdict(shell_goal),
        ],
        [
            "Process start (`noetl-agent run` seq1, python)",
            "< 0.5 s",
            fmt_s(ours_py.start),
            verdict(None if ours_py.start is None else ours_py.start < GOAL_START_S),
        ],
    ]
    tables.append(("Goals", ["Goal", "Target", "Measured", "Result"], goals))

    # Whole-process wall time
    headers = ["Workload", "ours"]
    if "noetl" in has:
        headers += ["noetl", "ours/noetl"]
    if "prefect" in has:
        headers += ["prefect", "prefect in-flow", "prefect body", "ours/prefect"]
    rows: list[list[str]] = []
    for workload in WORKLOADS:
        for kind in KINDS:
            ours_cell = cells.get(("ours", workload.name, kind))
            ours_med = ours_cell.median() if ours_cell else None
            row = [f"{workload.name} {kind}", cell_text("ours", workload.name, kind)]
            if "noetl" in has:
                c = cells.get(("noetl", workload.name, kind))
                same = c is not None and c.work_identical
                row += [
                    cell_text("noetl", workload.name, kind),
                    fmt_ratio(ours_med, c.median() if c and same else None),
                ]
            if "prefect" in has:
                c = cells.get(("prefect", workload.name, kind))
                row += [
                    cell_text("prefect", workload.name, kind),
                    cell_text("prefect", workload.name, kind, "in_flow_s"),
                    cell_text("prefect", workload.name, kind, "body_s"),
                    fmt_ratio(ours_med, c.median() if c else None),
                ]
            rows.append(row)
    tables.append(("Whole-process wall time (median)", headers, rows))

    # Overheads
    headers = ["Figure", "ours python", "ours shell"]
    peer_cols: list[tuple[str, Derived, str]] = []
    if "noetl" in has:
        peer_cols.append(("noetl shell", noetl_sh, "shell"))
    if "prefect" in has:
        peer_cols.append(("prefect", derive(cells, "prefect", "python"), "python"))
        prefect_body = derive(cells, "prefect", "python", "body_s")
        prefect_body.start = None
        peer_cols.append(("prefect body (in-flow)", prefect_body, ""))
    headers += [name for name, _, _ in peer_cols]
    if "noetl" in has:
        headers.append("ours/noetl (shell)")
    if "prefect" in has:
        headers.append("ours/prefect (python, vs in-flow)")
    noetl_same = _comparable(cells, "noetl", "shell")
    figures = [
        ("Process start (seq1)", "start", {"seq1"}, fmt_s),
        ("Per step (seq40 - seq1) / 39", "per_step", {"seq1", "seq40"}, fmt_ms),
        ("Per loop iteration (loop200 - seq1) / 199", "per_iter", {"seq1", "loop200"}, fmt_ms),
        ("Per fan-out branch (fanout20 - seq1) / 21", "per_branch", {"seq1", "fanout20"}, fmt_ms),
    ]
    rows = []
    for label, attr, needs, fmt in figures:
        row = [label, fmt(getattr(ours_py, attr)), fmt(getattr(ours_sh, attr))]
        for name, derived, _ in peer_cols:
            value = getattr(derived, attr)
            text = fmt(value)
            if name.startswith("noetl") and value is not None and not needs <= noetl_same:
                text += " ≠"
            row.append(text)
        if "noetl" in has:
            peer_value = getattr(noetl_sh, attr) if needs <= noetl_same else None
            row.append(fmt_ratio(getattr(ours_sh, attr), peer_value))
        if "prefect" in has:
            # Start-up compares whole processes; the overheads compare with Prefect's
            # in-flow figures, which do not carry the noise of its server start.
            prefect_ref = peer_cols[-2][1] if attr == "start" else peer_cols[-1][1]
            row.append(fmt_ratio(getattr(ours_py, attr), getattr(prefect_ref, attr)))
        rows.append(row)
    tables.append(("Overheads (from medians)", headers, rows))

    if "prefect" in has:
        prefect_rows = []
        for workload in WORKLOADS:
            c = cells.get(("prefect", workload.name, "python"))
            body = c.median("body_s") if c else None
            tasks = workload.prefect_n + (1 if workload.prefect_mode == "fanout" else 0)
            per_task = None if body is None else body / tasks
            prefect_rows.append(
                [
                    f"{workload.prefect_mode} {workload.prefect_n}",
                    fmt_s(c.median("import_s") if c else None),
                    fmt_s(c.median("in_flow_s") if c else None),
                    fmt_s(body),
                    fmt_ms(per_task),
                ]
            )
        tables.append(
            (
                "Prefect in-flow figures (median)",
                ["Flow", "import", "in-flow", "body", "body per task"],
                prefect_rows,
            )
        )

    skipped: set[tuple[str, str]] = set()
    for (runner_name, workload_name, kind), cell in sorted(cells.items()):
        label = f"{runner_name} {workload_name}_{kind}"
        if cell.work_check:
            tag = "identical work" if cell.work_identical else "work differs (≠)"
            notes.append(f"work check {label}: {cell.work_check} — {tag}")
        if cell.skipped:
            if (runner_name, cell.skipped) not in skipped:
                skipped.add((runner_name, cell.skipped))
                notes.append(f"{runner_name} not measured: {cell.skipped}")
        elif not cell.ok:
            notes.append(f"{label}: {cell.status()}")
    return Report(tables, notes)


# --------------------------------------------------------------------------- output


def machine() -> dict[str, str]:
    """Core count, CPU model, Python version and OS."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count() or "?"),
        "cpu": model,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }


def render_console(console: Console, report: Report, header: str) -> None:
    """Print the report as Rich tables."""
    console.print(header)
    for title, headers, rows in report.tables:
        table = Table(title=title, title_justify="left")
        for i, head in enumerate(headers):
            table.add_column(head, justify="left" if i == 0 else "right")
        for row in rows:
            styled = [
                f"[green]{v}[/green]" if v == "PASS" else f"[red]{v}[/red]" if v == "FAIL" else v
                for v in row
            ]
            table.add_row(*styled)
        console.print(table)
    for note in report.notes:
        console.print(f"[yellow]•[/yellow] {note}")


def _md_cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report, meta: list[str]) -> str:
    """The report as the Markdown section written into RESULTS.md."""
    out = [MARK_START, "## Engine (embedded)", ""]
    out += [f"- {line}" for line in meta]
    out.append("")
    for title, headers, rows in report.tables:
        out += [f"### {title}", ""]
        out.append("| " + " | ".join(headers) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|")
        for row in rows:
            out.append("| " + " | ".join(_md_cell(v) for v in row) + " |")
        out.append("")
    out.append(
        "Ratios are ours ÷ peer (below 1x means ours is faster), from medians of identical "
        "work only; ≠ marks a peer figure whose run did different work (see notes). "
        "Prefect's overheads are given from whole-process times and from in-flow body times "
        "(server already up); the per-step ratios use the in-flow ones, since each Prefect "
        "process spends several seconds starting its server."
    )
    out.append("")
    if report.notes:
        out += ["### Notes", ""]
        out += [f"- {_md_cell(n)}" for n in report.notes]
        out.append("")
    out.append(MARK_END)
    return "\n".join(out)


def write_results(path: Path, section: str) -> None:
    """Replace the engine section of ``path`` (creating the file if needed)."""
    write_section(path, section, MARK_START, MARK_END)


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m evals.bench.engine", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs per cell (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    parser.add_argument(
        "--only", action="append", choices=RUNNERS, help="run only these runners (repeatable)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="one run; skip peers whose env is not installed"
    )
    parser.add_argument("--no-peers", action="store_true", help="measure ours only")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per process run")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown results file")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 1
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup not negative")
    return args


def select_runners(args: argparse.Namespace, folder: Path, console: Console) -> list[Runner]:
    """Build the runners asked for, installing peer environments when needed."""
    names = list(dict.fromkeys(args.only or RUNNERS))
    if args.no_peers:
        names = [n for n in names if n == "ours"]
    runners: list[Runner] = []
    for name in names:
        runner: Runner
        if name == "ours":
            runner = Ours(args.timeout)
        elif name == "noetl":
            runner = NoetlPeer(args.timeout)
        else:
            runner = PrefectPeer(args.timeout, folder / "prefect_flow.py")
        if isinstance(runner, NoetlPeer | PrefectPeer):
            peer = runner.peer
            if not peer.ready():
                if args.quick:
                    console.print(f"[yellow]skipping {name}: no environment at {peer.root}[/]")
                    continue
                try:
                    peer.ensure()
                except (PeerInstallError, subprocess.CalledProcessError, OSError) as exc:
                    runner.unavailable = f"peer install failed: {exc}"
        if runner.unavailable:
            console.print(f"[red]{name}: {runner.unavailable}[/red]")
        runners.append(runner)
    return runners


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the tables and update RESULTS.md."""
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    folder = workloads_dir()
    runners = select_runners(args, folder, console)
    if not runners:
        console.print("[red]nothing to run[/red]")
        return 2
    started = dt.datetime.now().astimezone()
    t0 = time.perf_counter()
    cells = measure(runners, folder, args.runs, args.warmup, console)
    elapsed = time.perf_counter() - t0
    report = build_report(cells, [r.name for r in runners])
    info = machine()
    peers = []
    for r in runners:
        if isinstance(r, NoetlPeer):
            peers.append(f"{r.peer.requirement} (`noetl run FILE -r local`, shell workloads)")
        elif isinstance(r, PrefectPeer):
            peers.append(f"{r.peer.requirement} (ephemeral local server, python workloads)")
    meta = [
        f"Date: {started:%Y-%m-%d %H:%M %Z}; benchmark took {elapsed:.0f} s",
        f"Machine: {info['nproc']} cores, {info['cpu']}, {info['os']}, Python {info['python']}",
        f"Method: whole-process wall time, median of {args.runs} run(s) after "
        f"{args.warmup} warm-up run(s), fresh state folder per runner and workload",
        "Ours: `noetl-agent run FILE --json` (embedded mode)",
        "Peers: " + ("; ".join(peers) if peers else "none"),
    ]
    render_console(console, report, "\n".join(meta))
    write_results(args.results, render_markdown(report, meta))
    console.print(f"results written to {args.results}")
    ours_failed = any(c.runner == "ours" and not c.ok for c in cells.values())
    return 1 if ours_failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
