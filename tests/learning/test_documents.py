"""What a failure's message vector is made of: its error message rewritten to say its
cause."""

from __future__ import annotations

import pytest

from learning.documents import normalise_error


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("KeyError: 'customer_id'", "'customer id' (key error)"),
        (
            "ConnectionRefusedError: [Errno 111] Connection refused",
            "Connection refused (connection refused error)",
        ),
        (
            "PermissionError: [Errno 13] Permission denied: '/var/reports/out.pdf'",
            "Permission denied: ' path ' (permission error)",
        ),
        # a chain of classes: the innermost message first, then the classes, innermost first
        (
            "JavaError: java.lang.OutOfMemoryError: Java heap space",
            "Java heap space (out of memory error) (java error)",
        ),
        # a class named with its package loses the package
        (
            "psycopg2.errors.UndefinedTable: relation orders does not exist",
            "relation orders does not exist (undefined table)",
        ),
        (
            "numpy.core._exceptions._ArrayMemoryError: Unable to allocate 2.00 GiB",
            "Unable to allocate 2.00 GiB (array memory error)",
        ),
        (
            "socket.gaierror: Name or service not known",
            "Name or service not known (socket gaierror)",
        ),
        # a message with a colon is not a chain
        (
            "RuntimeError: rate limit exceeded: retry after 60 seconds",
            "rate limit exceeded: retry after 60 seconds (runtime error)",
        ),
        ("fetch from https://api.example.com/v2/x?id=7 failed", "fetch from url failed"),
    ],
)
def test_error_messages_are_rewritten_to_say_their_cause(message: str, expected: str) -> None:
    assert normalise_error(message).split("\n")[0] == expected


def test_cited_statuses_and_errno_names_get_their_meaning() -> None:
    lines = normalise_error("HTTPError: 429 Too Many Requests").split("\n")
    assert lines[1].startswith("Too Many Requests: ")
    assert normalise_error("ECONNREFUSED at db.internal:5432").split("\n")[1:] == [
        "Connection refused"
    ]


def test_a_chain_is_followed_a_few_classes_deep() -> None:
    message = "A: B: C: D: E: the message"
    assert normalise_error(message) == "D: E: the message (C) (B) (A)"


def test_sqlstates_and_built_in_exceptions_get_their_meaning() -> None:
    lines = normalise_error(
        '*** query failed (42P01): relation "orders_2025" does not exist'
    ).split("\n")
    assert lines[1:] == ["undefined table"]
    assert "***" not in lines[0]  # a masked value says nothing of the cause
    assert normalise_error("ERROR: canceled (SQLSTATE 57014)").split("\n")[1:] == ["query canceled"]
    assert normalise_error("KeyError: 'price'").split("\n")[1:] == ["Mapping key not found."]
    assert normalise_error("RuntimeError: boom") == "boom (runtime error)"  # a vague base


def test_the_advice_a_tool_appends_is_left_out() -> None:
    message = (
        "GET http://127.0.0.1:8080/v1 timed out after 0.3s (ReadTimeout); raise `timeout` "
        "or check that the server is responsive"
    )
    assert normalise_error(message) == "GET url timed out after 0.3s (read timeout)"


def test_leaving_out_the_advice_keeps_the_exception_class() -> None:
    message = "ConnectionError: cannot connect; check the host and port"
    assert normalise_error(message).split("\n")[0] == "cannot connect (connection error)"
