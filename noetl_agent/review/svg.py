"""Small server-side SVG charts for the review page: no JavaScript, no plotting library.

Each function takes plain numbers and returns one self-contained ``<svg>`` element as a
string, with a ``<title>`` for screen readers and every label escaped. The page embeds
them inline, so a plot is visible the moment the HTML arrives and prints as it looks.

- ``outcome_strip``: one square per execution in start order, red for a failure, with a
  divider where the playbook version changed (failures before/after at a glance);
- ``rate_bars``: failure rates before/after as bars with their confidence intervals as
  whiskers;
- ``duration_strip``: every execution's duration as a dot per group, with the median as
  a line;
- ``timeline``: the step runs of one execution as horizontal bars on a time axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from statistics import median

WIDTH = 480
FAIL = "#c62828"
OK = "#2e7d32"
MUTED = "#9e9e9e"
INK = "#212121"
COLORS = {"success": OK, "completed": OK, "error": FAIL, "failed": FAIL}


@dataclass(frozen=True, slots=True)
class RateBar:
    """One group of a ``rate_bars`` chart: a rate in [0, 1] and its interval."""

    label: str
    rate: float
    low: float
    high: float
    note: str = ""  # shown under the label, e.g. "n=40"


@dataclass(frozen=True, slots=True)
class Span:
    """One bar of a ``timeline``: seconds from the start of the execution."""

    label: str
    start_s: float
    end_s: float
    status: str


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if value % 1 else str(int(value))


def _svg(height: int, title: str, body: list[str], width: int = WIDTH) -> str:
    label = escape(title)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="{label}"><title>{label}</title>{"".join(body)}</svg>'
    )


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 11) -> str:
    return (
        f'<text x="{_num(x)}" y="{_num(y)}" font-size="{size}" fill="{INK}" '
        f'text-anchor="{anchor}">{escape(text)}</text>'
    )


def _fmt_seconds(seconds: float) -> str:
    if seconds >= 100:
        return f"{seconds:.0f}s"
    if seconds >= 1:
        return f"{seconds:.1f}s"
    return f"{seconds * 1000:.0f}ms"


def outcome_strip(groups: Sequence[tuple[str, Sequence[bool]]], title: str) -> str:
    """Executions as squares (green ok, red failed), one row across, group after group;
    ``groups`` is ``[(label, [ok, ...]), ...]`` in time order."""
    total = sum(len(outcomes) for _, outcomes in groups)
    cell = max(3.0, min(12.0, (WIDTH - 20) / max(total, 1)))
    body: list[str] = []
    x = 10.0
    for index, (label, outcomes) in enumerate(groups):
        if index:
            body.append(
                f'<line x1="{_num(x + 1)}" y1="4" x2="{_num(x + 1)}" y2="46" '
                f'stroke="{INK}" stroke-dasharray="3 2"/>'
            )
            x += 4
        failed = sum(1 for ok in outcomes if not ok)
        body.append(_text(x, 14, f"{label}: {failed}/{len(outcomes)} failed"))
        for ok in outcomes:
            colour = OK if ok else FAIL
            body.append(
                f'<rect class="{"ok" if ok else "failed"}" x="{_num(x)}" y="22" '
                f'width="{_num(max(cell - 1, 2))}" height="16" fill="{colour}"/>'
            )
            x += cell
    if total == 0:
        body.append(_text(WIDTH / 2, 34, "no finished executions yet", "middle"))
    return _svg(50, title, body)


def rate_bars(bars: Sequence[RateBar], title: str) -> str:
    """Failure rates as vertical bars with interval whiskers, on a 0-100% axis."""
    height, top, bottom, left = 170, 10, 130, 44
    scale = bottom - top
    body = [
        f'<line x1="{left}" y1="{bottom}" x2="{WIDTH - 10}" y2="{bottom}" stroke="{INK}"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="{INK}"/>',
    ]
    for tick in (0.0, 0.5, 1.0):
        y = bottom - tick * scale
        body.append(_text(left - 4, y + 4, f"{tick:.0%}", "end", 10))
        body.append(
            f'<line x1="{left}" y1="{_num(y)}" x2="{WIDTH - 10}" y2="{_num(y)}" '
            f'stroke="{MUTED}" stroke-width="0.5"/>'
        )
    slot = (WIDTH - left - 20) / max(len(bars), 1)
    for index, bar in enumerate(bars):
        rate, low, high = (min(max(v, 0.0), 1.0) for v in (bar.rate, bar.low, bar.high))
        cx = left + 10 + slot * (index + 0.5)
        width = min(60.0, slot * 0.5)
        y = bottom - rate * scale
        body.append(
            f'<rect class="bar" x="{_num(cx - width / 2)}" y="{_num(y)}" width="{_num(width)}" '
            f'height="{_num(bottom - y)}" fill="{FAIL}" fill-opacity="0.7"/>'
        )
        y_low, y_high = bottom - low * scale, bottom - high * scale
        body.append(
            f'<path class="interval" d="M{_num(cx)} {_num(y_low)}V{_num(y_high)}'
            f'M{_num(cx - 8)} {_num(y_low)}h16M{_num(cx - 8)} {_num(y_high)}h16" '
            f'stroke="{INK}" fill="none"/>'
        )
        body.append(_text(cx + width / 2 + 4, y + 4, f"{rate:.0%}", "start", 10))
        body.append(_text(cx, bottom + 16, bar.label, "middle"))
        if bar.note:
            body.append(_text(cx, bottom + 30, bar.note, "middle", 10))
    return _svg(height, title, body)


def duration_strip(groups: Sequence[tuple[str, Sequence[float]]], title: str) -> str:
    """Durations in seconds as dots, one row per group, the median as a tick."""
    row, left = 34, 110
    height = 30 + row * max(len(groups), 1)
    values = [v for _, durations in groups for v in durations]
    top_value = max(values, default=0.0) or 1.0
    span = WIDTH - left - 20

    def at(value: float) -> float:
        return left + span * value / top_value

    body = [
        f'<line x1="{left}" y1="{height - 20}" x2="{WIDTH - 10}" y2="{height - 20}" '
        f'stroke="{INK}"/>',
        _text(left, height - 6, "0", "middle", 10),
        _text(left + span, height - 6, _fmt_seconds(top_value), "middle", 10),
    ]
    for index, (label, durations) in enumerate(groups):
        y = 16 + index * row
        note = f"median {_fmt_seconds(median(durations))}" if durations else "no runs"
        body.append(_text(4, y + 4, label, "start", 11))
        body.append(_text(4, y + 17, note, "start", 9))
        for value in durations:
            body.append(
                f'<circle class="run" cx="{_num(at(value))}" cy="{y}" r="3" fill="{OK}" '
                'fill-opacity="0.5"/>'
            )
        if durations:
            x = at(median(durations))
            body.append(
                f'<line class="median" x1="{_num(x)}" y1="{y - 9}" x2="{_num(x)}" '
                f'y2="{y + 9}" stroke="{INK}" stroke-width="2"/>'
            )
    return _svg(height, title, body)


def timeline(spans: Sequence[Span], title: str) -> str:
    """Step runs as bars on the execution's time axis, one row each, coloured by status."""
    row, left = 22, 150
    height = 30 + row * max(len(spans), 1)
    end = max((s.end_s for s in spans), default=0.0) or 1.0
    width = WIDTH - left - 20

    def at(seconds: float) -> float:
        return left + width * max(seconds, 0.0) / end

    body = [
        f'<line x1="{left}" y1="{height - 20}" x2="{WIDTH - 10}" y2="{height - 20}" '
        f'stroke="{INK}"/>',
        _text(left, height - 6, "0", "middle", 10),
        _text(left + width, height - 6, _fmt_seconds(end), "middle", 10),
    ]
    for index, span in enumerate(spans):
        y = 8 + index * row
        x0 = at(span.start_s)
        x1 = max(at(span.end_s), x0 + 2)
        colour = COLORS.get(span.status, MUTED)
        body.append(_text(4, y + 12, span.label[:22], "start", 11))
        body.append(
            f'<rect class="span {escape(span.status)}" x="{_num(x0)}" y="{y}" '
            f'width="{_num(x1 - x0)}" height="14" fill="{colour}" fill-opacity="0.8">'
            f"<title>{escape(span.label)}: {escape(span.status)}, "
            f"{_fmt_seconds(span.end_s - span.start_s)}</title></rect>"
        )
    if not spans:
        body.append(_text(WIDTH / 2, 20, "no step ran", "middle"))
    return _svg(height, title, body)
