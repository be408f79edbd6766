"""Likely causes of a failure: rule-based hints by error class, ranked with the evidence of
similar past failures.

A cause is one of the kinds in :data:`CAUSES` (credentials rejected, a transient service
error, the input has another shape than the step expects, ...), each with what it means
and what usually fixes it. :func:`classify` maps an error (its code and message) to the
causes whose patterns it matches, most specific first; an error no rule knows gets the
cause ``error:<code>`` ("the same error as ..."), so past failures still group by it.

:func:`rank` weighs the candidates, and explains each weight:

- the failure's own error, matched by the rules: :data:`RULE_WEIGHT` for the first
  cause matched, half of it for the others; an error no rule knows gives its
  fallback cause only :data:`UNKNOWN_WEIGHT`, so similar failures decide;
- every similar past failure more than :data:`MIN_SIMILARITY` alike: its similarity
  above that floor, rescaled to 0..1 (two unrelated errors still score about 0.3, so
  only the part above it is evidence), times :data:`RESOLVED_FACTOR` when a later run or
  an applied policy resolved it, times :data:`CONFIRMED_FACTOR` for a cause that
  feedback said helped on it (that cause is then the failure's cause) or
  :data:`REFUTED_FACTOR` for one it said did not.

Scores are shares of the total, so they read as how strongly the evidence points at each
cause. Everything here is pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

RULE_WEIGHT = 1.0
UNKNOWN_WEIGHT = 0.25
MIN_SIMILARITY = 0.35
RESOLVED_FACTOR = 1.5
CONFIRMED_FACTOR = 1.5
REFUTED_FACTOR = 0.25
UNKNOWN_PREFIX = "error:"


@dataclass(frozen=True, slots=True)
class CauseKind:
    """One kind of cause: what it means, how to recognise it, what fixes it."""

    id: str
    title: str
    patterns: tuple[str, ...]  # regular expressions over "code: message", case-insensitive
    fixes: tuple[str, ...]
    transient: bool = False

    def matches(self, text: str) -> bool:
        return any(re.search(pattern, text, re.IGNORECASE) for pattern in self.patterns)


_KINDS: tuple[CauseKind, ...] = (
    CauseKind(
        "credentials",
        "the credentials were rejected (missing, wrong or expired token or password)",
        (
            r"\b401\b",
            r"\b403\b",
            r"unauthori[sz]ed",
            r"forbidden",
            r"authenticat\w* (failed|error)",
            r"(invalid|expired|rejected|bad) (api )?(token|credential|password|key)",
            r"(token|credentials?|password)s? (was|were|is|are|has|have)? ?"
            r"(rejected|expired|invalid)",
            r"password authentication failed",
            r"access token",
        ),
        (
            "check the credential the step's `auth` or keychain entry names "
            "(`noetl-agent credentials list`) and rotate it if it expired",
            "do not retry: the same credential fails the same way; remove retries for this "
            "error class",
        ),
    ),
    CauseKind(
        "transient",
        "a transient service error (rate limit, overload or a temporary outage)",
        (
            r"\b429\b",
            r"\b50[234]\b",
            r"too many requests",
            r"rate.?limit",
            r"quota",
            r"service unavailable",
            r"temporarily unavailable",
            r"bad gateway",
            r"try again later",
            r"retry after",
            r"throttl",
        ),
        (
            "add a retry policy with exponential backoff for this error "
            "(`tool.spec.policy` rules: `do: retry`, `attempts`, `backoff: exponential`, "
            "`delay`)",
            "lower the request rate (loop `max_in_flight`) or raise the quota",
        ),
        transient=True,
    ),
    CauseKind(
        "timeout",
        "the call took longer than its time limit",
        (
            r"timeout",
            r"timed? ?out",
            r"deadline exceeded",
            r"statement timeout",
        ),
        (
            "raise the step's `spec.timeout` (or the tool's `timeout`) if the work is "
            "legitimately slow",
            "retry with backoff when the slowness is intermittent; otherwise find why the "
            "upstream is slow",
        ),
        transient=True,
    ),
    CauseKind(
        "service_down",
        "the service is down or the URL/port is wrong (connection refused)",
        (
            r"connection refused",
            r"econnrefused",
            r"refused",
            r"not accepting (tcp/ip )?connections",
            r"could not connect",
            r"failed to establish a new connection",
            r"connect(ion)? error",
            r"errno 111",
        ),
        (
            "check the service is running and reachable from the worker",
            "check the URL, host and port in the step (and the credential's DSN)",
            "retry with a delay only if the service restarts on its own",
        ),
    ),
    CauseKind(
        "dns",
        "the host name could not be resolved (typo in the URL, DNS outage)",
        (
            r"name or service not known",
            r"\benotfound\b",
            r"could not resolve",
            r"getaddrinfo",
            r"gaierror",
            r"nodename nor servname",
            r"temporary failure in name resolution",
        ),
        (
            "check the host name in the step's URL or credential",
            "check DNS from the worker's network",
        ),
    ),
    CauseKind(
        "input_shape",
        "the input does not have the shape the step expects (a missing key or field)",
        (
            r"keyerror",
            r"lookuperror",
            r"indexerror",
            r"missing (required )?(key|field|column|property)",
            r"(key|field|column|property) \S+ (not present|not found|is missing)",
            r"not present in",
            r"has no attribute",
            r"undefined",
        ),
        (
            "compare the step's input with what the previous step or the workload really "
            "produced (`noetl-agent executions events EXEC_ID`)",
            "use `.get()` with a default, or validate the record's keys before using them",
            "do not retry: the same input fails the same way",
        ),
    ),
    CauseKind(
        "bad_value",
        "a value has the wrong type or format (text where a number was expected, ...)",
        (
            r"valueerror",
            r"typeerror",
            r"invalid literal",
            r"could not convert",
            r"expected (a |an )?\w+ .*(got|but)",
            r"invalid (input|value|format)",
        ),
        (
            "check the format of the offending value in the input and parse or cast it explicitly",
            "reject or quarantine bad records instead of failing the step",
        ),
    ),
    CauseKind(
        "division_by_zero",
        "a division by zero (an empty group or a zero denominator)",
        (r"zerodivision", r"division by zero", r"divided by zero", r"denominator is 0"),
        ("guard the computation against empty inputs and zero denominators",),
    ),
    CauseKind(
        "missing_file",
        "a file or path the step reads does not exist",
        (
            r"filenotfound",
            r"no such file",
            r"errno 2\b",
            r"does not exist",
            r"was not found",
            r"not found",
        ),
        (
            "check the path (and the date in it) and that the producer wrote the file first",
            "wait for the file, or make the step skip cleanly when it is absent",
        ),
    ),
    CauseKind(
        "permission",
        "the step is not allowed to write or read there (permissions, read-only mount)",
        (
            r"permission denied",
            r"errno 13\b",
            r"read-only file system",
            r"access denied",
            r"permissionerror",
            r"not permitted",
        ),
        ("check the permissions of the path for the worker's user, and the mount options",),
    ),
    CauseKind(
        "disk_full",
        "the disk or quota is full",
        (r"no space left", r"errno 28\b", r"disk quota", r"(volume|disk) \S* ?is full"),
        ("free space or grow the volume; write temporary files elsewhere",),
    ),
    CauseKind(
        "out_of_memory",
        "the step ran out of memory",
        (r"memoryerror", r"out ?of ?memory", r"\boom\b", r"unable to allocate", r"heap space"),
        (
            "run the step on a pool with more memory (`spec.runtime.pool`, "
            "`spec.runtime.resources.memory_mb`)",
            "process the data in chunks",
        ),
    ),
)
# Most specific first: an error matching several kinds is classified by the first
# ("disk quota exceeded" is a full disk before it is a quota, a DNS failure of a
# connection is DNS before it is a refused connection).
ORDER = (
    "credentials",
    "disk_full",
    "out_of_memory",
    "transient",
    "timeout",
    "dns",
    "service_down",
    "permission",
    "input_shape",
    "division_by_zero",
    "bad_value",
    "missing_file",
)
CAUSES: tuple[CauseKind, ...] = tuple(sorted(_KINDS, key=lambda kind: ORDER.index(kind.id)))
BY_ID: dict[str, CauseKind] = {kind.id: kind for kind in CAUSES}


@dataclass(frozen=True, slots=True)
class FailureError:
    """What an error says: its kind (tool), code (exception class, status) and message."""

    message: str
    code: str | None = None
    kind: str | None = None

    @property
    def text(self) -> str:
        """``code: message``, the code left out when the message already starts with it."""
        if not self.code or self.message.startswith(self.code):
            return self.message
        return f"{self.code}: {self.message}"


def unknown_cause(code: str | None) -> str:
    """The cause id of an error no rule knows, by its code."""
    return f"{UNKNOWN_PREFIX}{code or 'unknown'}"


def classify(error: FailureError) -> list[str]:
    """Cause ids whose rules match ``error``, most specific first; ``[error:<code>]``
    when none does."""
    found = [kind.id for kind in CAUSES if kind.matches(error.text)]
    return found or [unknown_cause(error.code)]


def title_of(cause: str) -> str:
    """What a cause id means, in words."""
    kind = BY_ID.get(cause)
    if kind is not None:
        return kind.title
    code = cause.removeprefix(UNKNOWN_PREFIX)
    return f"{code} (no rule knows this error; see the similar past failures)"


def fixes_of(cause: str) -> list[str]:
    kind = BY_ID.get(cause)
    if kind is not None:
        return list(kind.fixes)
    return [
        "read the error and the traceback of the failed attempt",
        "look at how the similar past failures were resolved",
    ]


@dataclass(frozen=True, slots=True)
class PastFailure:
    """A similar past failure as the ranking sees it."""

    execution_id: str
    similarity: float
    error: FailureError
    resolved: bool = False
    confirmed: tuple[str, ...] = ()  # causes feedback said helped on it
    refuted: tuple[str, ...] = ()  # causes feedback said did not help


@dataclass(slots=True)
class Cause:
    """A ranked likely cause: its share of the evidence and the evidence itself."""

    id: str
    title: str
    score: float
    fixes: list[str]
    evidence: list[str] = field(default_factory=list)
    supported_by: list[str] = field(default_factory=list)  # past execution ids
    resolved: int = 0  # how many of those were resolved
    weight: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "score": round(self.score, 3),
            "fixes": list(self.fixes),
            "evidence": list(self.evidence),
            "supported_by": list(self.supported_by),
            "resolved": self.resolved,
        }


def causes_of_past(failure: PastFailure, *, use_rules: bool = True) -> list[str]:
    """A past failure's causes: the ones feedback confirmed, else the rules' first (none
    without ``use_rules``)."""
    if failure.confirmed:
        return list(dict.fromkeys(failure.confirmed))
    return classify(failure.error)[:1] if use_rules else []


def rank(
    error: FailureError, past: Sequence[PastFailure], *, use_rules: bool = True
) -> list[Cause]:
    """Likely causes of ``error``, best first (see the module docstring). Without
    ``use_rules`` only what feedback confirmed on similar failures counts (how far the
    recorded history alone carries, as the explanation eval measures)."""
    found: dict[str, Cause] = {}

    def cause(cause_id: str) -> Cause:
        if cause_id not in found:
            found[cause_id] = Cause(cause_id, title_of(cause_id), 0.0, fixes_of(cause_id))
        return found[cause_id]

    own = classify(error) if use_rules else []
    for position, cause_id in enumerate(own):
        item = cause(cause_id)
        weight = RULE_WEIGHT if position == 0 else RULE_WEIGHT / 2
        if cause_id.startswith(UNKNOWN_PREFIX):
            item.weight += UNKNOWN_WEIGHT
            item.evidence.append(f"no rule recognises the error {error.text!r}")
        else:
            item.weight += weight
            item.evidence.append(f"the error {_clip(error.text)!r} matches the rule for it")
    for failure in past:
        if failure.similarity <= MIN_SIMILARITY:
            continue
        relevance = (min(failure.similarity, 1.0) - MIN_SIMILARITY) / (1 - MIN_SIMILARITY)
        for cause_id in causes_of_past(failure, use_rules=use_rules):
            weight = relevance
            notes = [f"similarity {failure.similarity:.2f}"]
            if failure.resolved:
                weight *= RESOLVED_FACTOR
                notes.append("resolved later")
            if cause_id in failure.confirmed:
                weight *= CONFIRMED_FACTOR
                notes.append("feedback confirmed this cause")
            if cause_id in failure.refuted:
                weight *= REFUTED_FACTOR
                notes.append("feedback said this cause did not help")
            item = cause(cause_id)
            item.weight += weight
            item.supported_by.append(failure.execution_id)
            item.resolved += int(failure.resolved)
            item.evidence.append(
                f"past failure {failure.execution_id} ({', '.join(notes)}): "
                f"{_clip(failure.error.text)!r}"
            )
        for cause_id in failure.refuted:
            if cause_id in found and cause_id not in causes_of_past(failure, use_rules=use_rules):
                found[cause_id].weight *= 1 - (1 - REFUTED_FACTOR) * relevance / 2
    total = sum(item.weight for item in found.values()) or 1.0
    for item in found.values():
        item.score = item.weight / total
    return sorted(found.values(), key=lambda item: (-item.weight, item.id))


def transient(cause: str) -> bool:
    """Whether retrying usually helps with ``cause``."""
    kind = BY_ID.get(cause)
    return bool(kind and kind.transient)


def _clip(text: str, limit: int = 160) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def known_ids() -> Iterable[str]:
    """Every rule-based cause id."""
    return BY_ID.keys()
