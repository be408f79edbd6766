"""Settings of the closed loop, from the environment.

NOETL_POLICY_QUORUM            distinct human approvers a proposal needs (default 1)
NOETL_POLICY_EXPIRY            how long a proposal waits for decisions: 7d, 12h, 30m,
                               90s or seconds (default 7d)
NOETL_POLICY_EVALUATE_AFTER    finished executions on an applied version before its
                               effect is measured (default 20)
NOETL_POLICY_TARGET_SUCCESS    P(success within the retries) the retry learner aims
                               at, between 0 and 1 (default 0.99)
NOETL_POLICY_MIN_SAMPLES       observations of a step (or of an error class) before a
                               learner proposes anything for it (default 10)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from noetl_agent.errors import AgentError

QUORUM_ENV = "NOETL_POLICY_QUORUM"
EXPIRY_ENV = "NOETL_POLICY_EXPIRY"
EVALUATE_AFTER_ENV = "NOETL_POLICY_EVALUATE_AFTER"
TARGET_SUCCESS_ENV = "NOETL_POLICY_TARGET_SUCCESS"
MIN_SAMPLES_ENV = "NOETL_POLICY_MIN_SAMPLES"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


class PolicyConfigError(AgentError):
    """A policy setting in the environment that cannot be read."""


def parse_duration(text: str, name: str = EXPIRY_ENV) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``90s`` or plain seconds, more than zero."""
    match = _DURATION.match(text)
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower()] if match else 0.0
    if seconds <= 0:
        raise PolicyConfigError(
            f"{name}={text!r} is not a duration; use a number with a unit, e.g. 7d, 12h, "
            "30m or 90s (more than zero)"
        )
    return timedelta(seconds=seconds)


def _whole(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise PolicyConfigError(f"{name}={raw!r} must be a whole number of at least 1")
    return value


def _probability(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise PolicyConfigError(f"{name}={raw!r} must be a probability between 0 and 1, e.g. 0.99")
    return value


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """How many approvers, how long proposals wait, when effects are measured."""

    quorum: int = 1
    expiry: timedelta = timedelta(days=7)
    evaluate_after: int = 20
    target_success: float = 0.99
    min_samples: int = 10

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PolicySettings:
        """Read the settings above; ``PolicyConfigError`` names a value that is wrong."""
        env = os.environ if environ is None else environ
        expiry = env.get(EXPIRY_ENV, "").strip()
        return cls(
            quorum=_whole(env, QUORUM_ENV, 1),
            expiry=parse_duration(expiry) if expiry else timedelta(days=7),
            evaluate_after=_whole(env, EVALUATE_AFTER_ENV, 20),
            target_success=_probability(env, TARGET_SUCCESS_ENV, 0.99),
            min_samples=_whole(env, MIN_SAMPLES_ENV, 10),
        )
