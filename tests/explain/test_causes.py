"""The rule-based hints by error class, and how past failures and feedback weigh causes."""

from __future__ import annotations

import pytest

from noetl_agent.explain_causes import (
    CAUSES,
    MIN_SIMILARITY,
    FailureError,
    PastFailure,
    classify,
    rank,
)


@pytest.mark.parametrize(
    ("code", "message", "cause"),
    [
        ("http_401", "401 Unauthorized: the token was rejected", "credentials"),
        ("HTTPError", "403 Forbidden: the access token has expired", "credentials"),
        ("http_503", "503 Service Unavailable", "transient"),
        ("http_429", "429 Too Many Requests", "transient"),
        ("KeyError", "KeyError: 'customer_id'", "input_shape"),
        ("TimeoutError", "read timed out after 30 seconds", "timeout"),
        ("timeout", "the step ran longer than spec.timeout (10 s)", "timeout"),
        ("ConnectionRefusedError", "[Errno 111] Connection refused", "service_down"),
        ("gaierror", "[Errno -2] Name or service not known", "dns"),
        ("FileNotFoundError", "[Errno 2] No such file or directory: 'a.csv'", "missing_file"),
        ("ZeroDivisionError", "division by zero", "division_by_zero"),
        ("ValueError", "invalid literal for int() with base 10: '12 EUR'", "bad_value"),
        ("OSError", "[Errno 28] No space left on device", "disk_full"),
        ("OSError", "disk quota exceeded for user etl", "disk_full"),
        ("PermissionError", "[Errno 13] Permission denied: '/var/out.pdf'", "permission"),
        ("MemoryError", "Unable to allocate 12.0 GiB for an array", "out_of_memory"),
        ("RuntimeError", "widget frobnication stalled", "error:RuntimeError"),
        (None, "something odd", "error:unknown"),
    ],
)
def test_errors_are_classified_by_their_class(code: str | None, message: str, cause: str) -> None:
    assert classify(FailureError(message, code))[0] == cause


def test_every_cause_has_fixes_and_a_title() -> None:
    for kind in CAUSES:
        assert kind.fixes and kind.title and kind.patterns


def test_similar_failures_outweigh_a_single_rule_and_weak_ones_are_ignored() -> None:
    error = FailureError("widget frobnication stalled", "RuntimeError")
    past = [
        PastFailure("a", 0.9, FailureError("503 Service Unavailable", "http_503")),
        PastFailure("b", 0.8, FailureError("503 Service Unavailable", "http_503"), resolved=True),
        PastFailure("c", MIN_SIMILARITY - 0.01, FailureError("no such file", "OSError")),
    ]

    causes = rank(error, past)

    assert [c.id for c in causes] == ["transient", "error:RuntimeError"]
    assert causes[0].supported_by == ["a", "b"] and causes[0].resolved == 1
    assert abs(sum(c.score for c in causes) - 1.0) < 1e-9


def test_feedback_confirms_or_refutes_a_past_failures_cause() -> None:
    error = FailureError("KeyError: 'email'", "KeyError")
    neutral = [PastFailure("a", 0.7, FailureError("KeyError: 'id'", "KeyError"))]
    # One moderately similar failure does not overrule the error's own class; a very
    # similar one whose feedback named another cause does.
    weakly = [
        PastFailure("a", 0.7, FailureError("KeyError: 'id'", "KeyError"), confirmed=("bad_value",))
    ]
    confirmed = [
        PastFailure("a", 0.95, FailureError("KeyError: 'id'", "KeyError"), confirmed=("bad_value",))
    ]
    refuted = [
        PastFailure("a", 0.7, FailureError("KeyError: 'id'", "KeyError"), refuted=("input_shape",))
    ]

    assert rank(error, neutral)[0].id == "input_shape"
    assert rank(error, weakly)[0].id == "input_shape"
    assert rank(error, confirmed)[0].id == "bad_value"
    before = {c.id: c.weight for c in rank(error, neutral)}
    after = {c.id: c.weight for c in rank(error, refuted)}
    assert after["input_shape"] < before["input_shape"]
