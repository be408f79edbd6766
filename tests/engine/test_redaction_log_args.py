"""Masking a secret in a log record keeps its arguments' shape for formatters that unpack
them (uvicorn's access log)."""

from __future__ import annotations

import logging

from uvicorn.logging import AccessFormatter

from engine.runtime.redaction import Redactor, redact_record


def _access_record() -> logging.LogRecord:
    return logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("10.1.2.3:5000", "GET", "/api/x?token=hunter2-secret", "1.1", 200),
        None,
    )


def test_an_access_log_line_is_masked_and_still_formats():
    redactor = Redactor()
    redactor.add("hunter2-secret")
    record = _access_record()
    redact_record(record, redactor)
    line = AccessFormatter("%(client_addr)s %(request_line)s %(status_code)s").format(record)
    assert line.startswith("10.1.2.3:5000 GET /api/x?token=*** HTTP/1.1 200")
    assert "hunter2" not in line


def test_a_secret_split_between_format_and_argument_is_still_masked():
    redactor = Redactor()
    redactor.add("hunter2-secret")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "key hunter2-%s", ("secret",), None)
    redact_record(record, redactor)
    assert record.getMessage() == "key ***"
