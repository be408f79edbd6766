"""The server-side SVG plots: well-formed, one mark per data point, labels escaped."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from noetl_agent.review import svg

NS = "{http://www.w3.org/2000/svg}"


def _parse(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == f"{NS}svg"
    assert root.attrib["role"] == "img"
    return root


def _marks(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{NS}{tag}") if cls in e.attrib.get("class", "").split()]


def _texts(root: ET.Element) -> list[str]:
    return [e.text or "" for e in root.iter(f"{NS}text")]


def test_outcome_strip_marks_every_execution_and_the_version_change():
    root = _parse(
        svg.outcome_strip([("v1", [True, False, False, True]), ("v2", [True, True, False])], "runs")
    )
    assert len(_marks(root, "rect", "failed")) == 3
    assert len(_marks(root, "rect", "ok")) == 4
    assert len(list(root.iter(f"{NS}line"))) == 1  # the divider between versions
    assert "v1: 2/4 failed" in _texts(root) and "v2: 1/3 failed" in _texts(root)
    assert root.find(f"{NS}title").text == "runs"  # type: ignore[union-attr]


def test_outcome_strip_without_executions_says_so():
    root = _parse(svg.outcome_strip([("v1", [])], "runs"))
    assert "no finished executions yet" in _texts(root)


@pytest.mark.parametrize(
    ("rate", "low", "high"),
    [(0.0, 0.0, 0.3), (0.25, 0.1, 0.5), (1.0, 0.7, 1.0), (1.5, -0.2, 2.0)],
)
def test_rate_bar_height_and_interval_follow_the_numbers(rate, low, high):
    root = _parse(svg.rate_bars([svg.RateBar("before", rate, low, high, "n=9")], "rates"))
    [bar] = _marks(root, "rect", "bar")
    clamped = min(max(rate, 0.0), 1.0)
    assert float(bar.attrib["height"]) == pytest.approx(clamped * 120, abs=0.1)
    [interval] = _marks(root, "path", "interval")
    match = re.match(r"M[\d.]+ ([\d.]+)V([\d.]+)M", interval.attrib["d"])
    assert match, interval.attrib["d"]
    y_low, y_high = (130 - min(max(v, 0.0), 1.0) * 120 for v in (low, high))
    assert float(match.group(1)) == pytest.approx(y_low, abs=0.1)
    assert float(match.group(2)) == pytest.approx(y_high, abs=0.1)
    assert "before" in _texts(root) and "n=9" in _texts(root)
    assert f"{clamped:.0%}" in _texts(root)


def test_duration_strip_has_a_dot_per_run_and_the_median():
    root = _parse(svg.duration_strip([("before", [1.0, 2.0, 9.0]), ("after", [])], "d"))
    assert len(_marks(root, "circle", "run")) == 3
    [median] = _marks(root, "line", "median")
    # the axis runs from x=110 (0 s) to x=460 (9 s): the median 2 s sits at 110 + 350 * 2/9
    assert float(median.attrib["x1"]) == pytest.approx(110 + 350 * 2 / 9, abs=0.1)
    texts = _texts(root)
    assert "median 2.0s" in texts and "no runs" in texts and "9.0s" in texts


def test_timeline_bars_span_their_steps():
    spans = [svg.Span("start", 0.0, 0.5, "success"), svg.Span("fetch", 0.5, 2.0, "error")]
    root = _parse(svg.timeline(spans, "steps"))
    [ok] = _marks(root, "rect", "success")
    [failed] = _marks(root, "rect", "error")
    assert float(failed.attrib["x"]) == pytest.approx(150 + 310 * 0.25, abs=0.1)
    assert float(failed.attrib["width"]) == pytest.approx(310 * 0.75, abs=0.1)
    assert float(ok.attrib["width"]) == pytest.approx(310 * 0.25, abs=0.1)
    assert "fetch: error, 1.5s" in "".join(failed.itertext())
    assert "no step ran" in _texts(_parse(svg.timeline([], "none")))


def test_labels_are_escaped():
    label = '<script>alert("x")</script>'
    for text in (
        svg.outcome_strip([(label, [True])], label),
        svg.rate_bars([svg.RateBar(label, 0.5, 0.4, 0.6, label)], label),
        svg.duration_strip([(label, [1.0])], label),
        svg.timeline([svg.Span(label, 0, 1, label)], label),
    ):
        assert "<script>" not in text
        root = _parse(text)
        assert not list(root.iter("script")) and not list(root.iter(f"{NS}script"))
