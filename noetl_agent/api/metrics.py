"""Server metrics in the Prometheus text exposition format (version 0.0.4).

Counters are kept in memory from the engine's event stream (``Engine.subscribe``), so
they count what this server process appended since it started; the execution gauge is
read from the event store at scrape time, so it covers every process sharing the store,
and so is the command queue depth of the distributed mode.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Mapping

from engine.core import events as ev
from engine.core.events import Event

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RATE_WINDOW = 60.0  # seconds the ingestion rate is averaged over
EXECUTION_STATUSES = ("running", "paused", "completed", "failed", "cancelled")
DEFAULT_POOL = "cpu"  # always shown in the queue depth, so an empty queue reads as 0


class Metrics:
    """Counts events, step starts and step finishes as the engine appends them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()
        self.events_ingested = 0
        self.events_reported = 0
        self.steps_started = 0
        self.steps_finished: Counter[str] = Counter()
        self._recent: deque[tuple[int, int]] = deque()  # (second, events in it)

    def __call__(self, event: Event) -> None:
        self.events_ingested += 1
        second = int(self._clock())
        if self._recent and self._recent[-1][0] == second:
            self._recent[-1] = (second, self._recent[-1][1] + 1)
        else:
            self._recent.append((second, 1))
        self._trim(second)
        if event.event_type == ev.STEP_STARTED:
            self.steps_started += 1
        elif event.event_type == ev.STEP_FINISHED:
            self.steps_finished[event.status or "unknown"] += 1

    def reported(self, count: int) -> None:
        """Count events workers posted to the API (repeats included)."""
        self.events_reported += count

    def rate(self) -> float:
        """Events ingested per second over the last ``RATE_WINDOW`` seconds."""
        now = self._clock()
        self._trim(int(now))
        span = min(RATE_WINDOW, max(now - self._started, 1.0))
        return sum(count for _, count in self._recent) / span

    def render(
        self,
        executions: Mapping[str, int],
        commands: Mapping[tuple[str, str], int] | None = None,
    ) -> str:
        """The exposition text, with ``executions`` counted by status and, when given,
        ``commands`` counted by ``(pool, status)``."""
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                text = f"{value:.6g}" if isinstance(value, float) else str(value)
                lines.append(f"{name}{labels} {text}")

        statuses = dict.fromkeys(EXECUTION_STATUSES, 0) | dict(executions)
        family(
            "noetl_executions",
            "gauge",
            "Executions in the event store by status.",
            [(f'{{status="{status}"}}', count) for status, count in sorted(statuses.items())],
        )
        family(
            "noetl_steps_started_total",
            "counter",
            "Step runs started by this server.",
            [("", self.steps_started)],
        )
        finished = dict.fromkeys(("success", "error"), 0) | dict(self.steps_finished)
        family(
            "noetl_steps_finished_total",
            "counter",
            "Step runs finished by this server, by status.",
            [(f'{{status="{status}"}}', count) for status, count in sorted(finished.items())],
        )
        family(
            "noetl_events_ingested_total",
            "counter",
            "Events appended to the event log by this server.",
            [("", self.events_ingested)],
        )
        family(
            "noetl_events_ingested_per_second",
            "gauge",
            f"Events appended per second, averaged over the last {RATE_WINDOW:g} s.",
            [("", self.rate())],
        )
        family(
            "noetl_worker_events_reported_total",
            "counter",
            "Events posted by workers to /api/events and /api/events/batch.",
            [("", self.events_reported)],
        )
        if commands is not None:
            pools = sorted({DEFAULT_POOL, *(pool for pool, _ in commands)})
            family(
                "noetl_command_queue_depth",
                "gauge",
                "Commands waiting for a worker (queued) or held by one (claimed), by pool.",
                [
                    (f'{{pool="{_label(pool)}",status="{status}"}}', commands.get(key, 0))
                    for pool in pools
                    for status in ("queued", "claimed")
                    for key in [(pool, status)]
                ],
            )
        return "\n".join(lines) + "\n"

    def _trim(self, second: int) -> None:
        while self._recent and self._recent[0][0] <= second - RATE_WINDOW:
            self._recent.popleft()


def _label(value: str) -> str:
    """A label value escaped as the exposition format asks (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
