"""Reading tool configuration fields: durations, the effective timeout, JSON-friendly values.

``ConfigInvalid`` is what the executors raise for a field they cannot use; each catches it
in ``run`` and reports a ``validation`` error with the message.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import sys
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from engine.ports import ToolContext

__all__ = ["ConfigInvalid", "effective_timeout", "jsonable", "seconds"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ConfigInvalid(ValueError):
    """A configuration field cannot be used as given; the message names it."""


def seconds(value: Any, field: str = "timeout") -> float:
    """``value`` as a positive, finite number of seconds.

    A number is seconds; a string is a number optionally followed by a unit, ``ms``,
    ``s``, ``m`` or ``h`` (``'250ms'``, ``'30s'``, ``'2m'``, ``'1h'``; case and surrounding
    spaces do not matter). Anything else, booleans included, raises ``ConfigInvalid``
    whose message starts with ``field``.
    """
    if isinstance(value, bool):
        raise ConfigInvalid(f"{field} must be a number of seconds, got {value!r}")
    if isinstance(value, int | float):
        amount = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        unit = next((u for u in ("ms", "s", "m", "h") if text.endswith(u)), "")
        try:
            amount = float(text[: len(text) - len(unit)]) * _UNITS.get(unit, 1.0)
        except ValueError:
            raise ConfigInvalid(
                f"{field} must be a number of seconds (or like '30s', '2m'), got {value!r}"
            ) from None
    else:
        raise ConfigInvalid(f"{field} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(amount) or amount <= 0:
        raise ConfigInvalid(f"{field} must be a positive number of seconds, got {value!r}")
    return amount


def effective_timeout(config: Mapping[str, Any], ctx: ToolContext) -> float | None:
    """The smaller of the step's timeout and the tool's ``timeout`` field, if any."""
    limits = [ctx.timeout] if ctx.timeout else []
    if config.get("timeout") is not None:
        limits.append(seconds(config["timeout"]))
    return min(limits) if limits else None


def jsonable(value: Any) -> Any:
    """``value`` with every part, however deeply nested, made JSON-friendly.

    Decimals become floats, dates and times ISO strings, durations seconds, UUIDs and IP
    addresses strings, bytes hex strings; an asyncpg record becomes a dict and an asyncpg
    range ``{lower, upper, lower_inc, upper_inc, empty}``; mappings become dicts with
    string keys, lists, tuples and sets become lists; anything else becomes its ``str``.
    """
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    # Only a loaded asyncpg can have made a record or a range, so it is not imported here.
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is not None:
        if isinstance(value, asyncpg.Record):
            return {key: jsonable(item) for key, item in value.items()}
        if isinstance(value, asyncpg.Range):
            return {
                "lower": jsonable(value.lower),
                "upper": jsonable(value.upper),
                "lower_inc": value.lower_inc,
                "upper_inc": value.upper_inc,
                "empty": value.isempty,
            }
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    return str(value)
