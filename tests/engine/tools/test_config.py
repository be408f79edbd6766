"""engine.tools.config: durations, the effective timeout and JSON-friendly values."""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from engine.ports import ToolContext
from engine.tools.config import ConfigInvalid, effective_timeout, jsonable, seconds

ROOT = Path(__file__).resolve().parents[3]


def _ctx(timeout: float | None) -> ToolContext:
    return ToolContext(execution_id="e1", step="step1", step_run_id="r1", timeout=timeout)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (30, 30.0),
        (2.5, 2.5),
        (10**3, 1000.0),
        ("30", 30.0),
        ("1e3", 1000.0),
        ("30s", 30.0),
        ("250ms", 0.25),
        ("2m", 120.0),
        ("1h", 3600.0),
        (" 1.5M ", 90.0),
        ("\t5 H\n", 18000.0),
        ("0.5 s", 0.5),
    ],
)
def test_seconds_reads_numbers_and_durations(value: Any, expected: float) -> None:
    assert seconds(value) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "{field} must be a number of seconds, got True"),
        (False, "{field} must be a number of seconds, got False"),
        (None, "{field} must be a number of seconds, got NoneType"),
        ([30], "{field} must be a number of seconds, got list"),
        (Decimal("3"), "{field} must be a number of seconds, got Decimal"),
        ("soon", "{field} must be a number of seconds (or like '30s', '2m'), got 'soon'"),
        ("", "{field} must be a number of seconds (or like '30s', '2m'), got ''"),
        ("ms", "{field} must be a number of seconds (or like '30s', '2m'), got 'ms'"),
        ("1d", "{field} must be a number of seconds (or like '30s', '2m'), got '1d'"),
        (0, "{field} must be a positive number of seconds, got 0"),
        (-1, "{field} must be a positive number of seconds, got -1"),
        ("-5s", "{field} must be a positive number of seconds, got '-5s'"),
        (math.inf, "{field} must be a positive number of seconds, got inf"),
        (math.nan, "{field} must be a positive number of seconds, got nan"),
        ("inf", "{field} must be a positive number of seconds, got 'inf'"),
    ],
)
@pytest.mark.parametrize("field", [None, "timeout", "`retry.delay`"])
def test_seconds_rejects_with_a_message_naming_the_field(
    value: Any, message: str, field: str | None
) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        seconds(value) if field is None else seconds(value, field)
    assert str(caught.value) == message.format(field=field or "timeout")


def test_config_invalid_is_a_value_error() -> None:
    assert issubclass(ConfigInvalid, ValueError)


@pytest.mark.parametrize(
    ("config", "step_timeout", "expected"),
    [
        ({}, None, None),
        ({}, 10.0, 10.0),
        ({"timeout": None}, 10.0, 10.0),
        ({"timeout": 5}, None, 5.0),
        ({"timeout": 5}, 10.0, 5.0),
        ({"timeout": "2m"}, 30.0, 30.0),
        ({"timeout": "250ms"}, 30.0, 0.25),
        ({"timeout": 5}, 0.0, 5.0),  # a step timeout of 0 sets no limit
        ({}, 0.0, None),
    ],
)
def test_effective_timeout_is_the_smaller_limit(
    config: dict[str, Any], step_timeout: float | None, expected: float | None
) -> None:
    assert effective_timeout(config, _ctx(step_timeout)) == expected


@pytest.mark.parametrize(
    ("timeout", "message"),
    [
        ("soon", "timeout must be a number of seconds (or like '30s', '2m'), got 'soon'"),
        (0, "timeout must be a positive number of seconds, got 0"),
        (True, "timeout must be a number of seconds, got True"),
    ],
)
def test_effective_timeout_rejects_an_unusable_tool_timeout(timeout: Any, message: str) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        effective_timeout({"timeout": timeout}, _ctx(10.0))
    assert str(caught.value) == message


class _Named:
    def __str__(self) -> str:
        return "named"


def _record(**fields: Any) -> Any:
    """An asyncpg record with ``fields``, made without a server (asyncpg's own test helper)."""
    create = getattr(asyncpg.protocol.protocol, "_create_record", None)
    if create is None:
        pytest.skip("this asyncpg cannot make a record without a server")
    return create({name: i for i, name in enumerate(fields)}, tuple(fields.values()))


KEY = uuid.UUID("12345678-1234-5678-1234-567812345678")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("text", "text"),
        (7, 7),
        (1.5, 1.5),
        (True, True),
        (Decimal("1.25"), 1.25),
        (dt.datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "2024-01-02T03:04:05+00:00"),
        (dt.date(2024, 1, 2), "2024-01-02"),
        (dt.time(3, 4), "03:04:00"),
        (dt.timedelta(minutes=1, milliseconds=500), 60.5),
        (KEY, "12345678-1234-5678-1234-567812345678"),
        (b"\x00\xff", "00ff"),
        (bytearray(b"\x01"), "01"),
        (memoryview(b"\x02"), "02"),
        (ipaddress.ip_address("10.0.0.1"), "10.0.0.1"),
        (ipaddress.ip_address("::1"), "::1"),
        (ipaddress.ip_network("10.0.0.0/8"), "10.0.0.0/8"),
        ({1: Decimal("2")}, {"1": 2.0}),
        ((1, b"\x01"), [1, "01"]),
        ({3}, [3]),
        ({"a": [dt.date(2024, 1, 2), {"b": (KEY,)}]}, {"a": ["2024-01-02", {"b": [str(KEY)]}]}),
        (frozenset({1}), "frozenset({1})"),
        (_Named(), "named"),
        (
            asyncpg.Range(1, 5),
            {"lower": 1, "upper": 5, "lower_inc": True, "upper_inc": False, "empty": False},
        ),
        (
            asyncpg.Range(dt.date(2024, 1, 1), dt.date(2024, 2, 1), upper_inc=True),
            {
                "lower": "2024-01-01",
                "upper": "2024-02-01",
                "lower_inc": True,
                "upper_inc": True,
                "empty": False,
            },
        ),
        (
            asyncpg.Range(empty=True),
            {"lower": None, "upper": None, "lower_inc": False, "upper_inc": False, "empty": True},
        ),
    ],
)
def test_jsonable(value: Any, expected: Any) -> None:
    assert jsonable(value) == expected


def test_jsonable_turns_asyncpg_records_into_dicts() -> None:
    record = _record(total=Decimal("2.50"), span=asyncpg.Range(1, 2), raw=b"\x01")
    assert jsonable([record]) == [
        {
            "total": 2.5,
            "span": {"lower": 1, "upper": 2, "lower_inc": True, "upper_inc": False, "empty": False},
            "raw": "01",
        }
    ]


def test_the_module_and_the_light_tools_do_not_import_asyncpg() -> None:
    code = (
        "import sys\n"
        "import engine.tools.shell, engine.tools.http\n"
        "from engine.tools.config import jsonable\n"
        "assert jsonable({'a': [object(), b'x']})['a'][1] == '78'\n"
        "assert 'asyncpg' not in sys.modules and 'duckdb' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
