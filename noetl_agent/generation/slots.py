"""Slots: the concrete values a sentence of a description names.

``extract(text)`` finds URLs, an HTTP method, table names, SQL, file paths, lists,
thresholds and comparisons, retry counts and backoff, a loop's collection, a
sub-playbook's path, a shell command, a timeout, a concurrency limit and schedules. It
only reads what is written; anything it cannot find stays empty, so the planner can say
what is missing instead of making it up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

URL = re.compile(r"https?://[^\s'\"`<>;]+?(?=[.,;:!?)]*(?:\s|$|`|'|\"))")
METHOD = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE)\b")
_SEND_VERBS = re.compile(r"\b(post|send|push|submit|upload|notify|deliver|report)\w*\b", re.I)
SQL = re.compile(
    r"(?:`|\"|')?\b((?:SELECT|INSERT|UPDATE|DELETE|CREATE|WITH|COPY|MERGE)\b[^`\"';]*)",
    re.I,
)
_SQL_START = re.compile(r"^(SELECT|INSERT|UPDATE|DELETE|CREATE|WITH|COPY|MERGE)\b", re.I)
BACKTICK = re.compile(r"`([^`]+)`")
TABLE = re.compile(
    r"\b(?:table|into|from)\s+(?:the\s+)?[`\"']?([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)?)[`\"']?"
    r"(?:\s+table)?",
    re.I,
)
TABLE_AFTER = re.compile(r"\bthe\s+([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?)\s+table\b", re.I)
FILE = re.compile(r"(?<![\w/:])((?:[\w.-]+/)*[\w*.-]+\.(?:csv|parquet|json|jsonl|tsv|xlsx))\b")
BRACKETS = re.compile(r"\[([^\]]+)\]")
RETRY_TIMES = re.compile(
    r"\b(?:retry|retries|retrying|attempt|attempts|tries|try)\D{0,20}?(\d+)\s*(?:times|attempts|tries|x)?\b"
    r"|\b(\d+)\s*(?:times|attempts|tries|retries)\b",
    re.I,
)
BACKOFF = re.compile(r"\b(exponential|linear)\b", re.I)
DELAY = re.compile(
    r"\b(?:wait(?:ing)?|delay(?:ed)?|after|every)\s+(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?|m|min|minutes?)\b",
    re.I,
)
TIMEOUT = re.compile(
    r"\b(?:timeout|time out|within)\s+(?:of\s+)?(\d+(?:\.\d+)?)\s*"
    r"(ms|s|sec|secs|seconds?|m|min|minutes?|h|hours?)\b",
    re.I,
)
IN_FLIGHT = re.compile(
    r"\b(?:at most|up to|no more than|max(?:imum)?(?: of)?)\s+(\d+)\s+"
    r"(?:at a time|at once|concurrent|in parallel|in flight|parallel)",
    re.I,
)
PLAYBOOK_PATH = re.compile(
    r"\b(?:sub-?playbook|playbook|workflow)\s+(?:called\s+|named\s+)?[`\"']?"
    r"([\w-]+(?:/[\w.-]+)+|[`\"'][\w./-]+[`\"'])",
    re.I,
)
SCRIPT = re.compile(r"(?<![\w/])((?:\./|/)?[\w./-]+\.(?:sh|bash|py))\b")
SCHEDULE = re.compile(
    r"\b(every\s+(?:\d+\s+)?(?:minute|hour|day|week|month|morning|night|evening|weekday|monday|"
    r"tuesday|wednesday|thursday|friday|saturday|sunday)s?"
    r"(?:\s+at\s+\d{1,2}(?::\d{2})?\s*(?:am|pm)?)?"
    r"|(?:hourly|daily|nightly|weekly|monthly)(?:\s+at\s+\d{1,2}(?::\d{2})?\s*(?:am|pm)?)?"
    r"|at\s+\d{1,2}(?::\d{2})?\s*(?:am|pm)\b(?:\s+(?:every day|daily|on weekdays))?"
    r"|cron\s+[`\"']?[\d*/,\- ]{9,}[`\"']?)(?![\w/])",
    re.I,
)
COMPARISON = re.compile(
    r"(?P<subject>(?:the\s+)?(?:number of\s+|count of\s+|total\s+|share of\s+)?"
    r"[A-Za-z_][\w ]{0,40}?)\s+"
    r"(?:is\s+|are\s+|was\s+|goes\s+|drops\s+|falls\s+|rises\s+)?"
    r"(?P<op>greater than or equal to|less than or equal to|greater than|more than|higher than|"
    r"larger than|above|over|exceeds?|exceeding|at least|no less than|less than|fewer than|"
    r"lower than|below|under|at most|no more than|equals?|equal to|>=|<=|>|<|==)\s+"
    r"(?P<value>-?\d+(?:\.\d+)?)\s*(?P<unit>%|percent)?",
    re.I,
)
OPERATORS = {
    "greater than or equal to": ">=",
    "at least": ">=",
    "no less than": ">=",
    ">=": ">=",
    "less than or equal to": "<=",
    "at most": "<=",
    "no more than": "<=",
    "<=": "<=",
    "greater than": ">",
    "more than": ">",
    "higher than": ">",
    "larger than": ">",
    "above": ">",
    "over": ">",
    "exceed": ">",
    "exceeds": ">",
    "exceeding": ">",
    ">": ">",
    "less than": "<",
    "fewer than": "<",
    "lower than": "<",
    "below": "<",
    "under": "<",
    "<": "<",
    "equal": "==",
    "equals": "==",
    "equal to": "==",
    "==": "==",
}
_STOP_WORDS = frozenset(
    {"the", "a", "an", "of", "if", "when", "whether", "its", "their", "is", "are", "and", "only"}
    | {"there"}
)
_COUNT_WORDS = frozenset({"number", "count", "rows", "records", "items", "results", "entries"})
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class Comparison:
    """``field op value``: a threshold written in words (``the error rate is above 5%``)."""

    field: str  # snake_case name; "count" for "the number of ..."
    op: str  # one of > >= < <= ==
    value: float
    text: str

    @property
    def literal(self) -> str:
        number = int(self.value) if self.value.is_integer() else self.value
        return f"{self.op} {number}"


@dataclass(slots=True)
class Slots:
    """Values found in one piece of text (empty when not written)."""

    urls: list[str] = field(default_factory=list)
    method: str | None = None
    sends: bool = False  # a verb that sends data (post, send, push, notify ...)
    sql: str | None = None
    tables: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    attempts: int | None = None
    backoff: str | None = None
    delay: float | None = None
    timeout: float | None = None
    max_in_flight: int | None = None
    playbook: str | None = None
    command: str | None = None
    schedules: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if name == "comparisons":
                value = [f"{c.field} {c.literal}" for c in value]
            if value not in (None, [], False):
                found[name] = value
        return found


def extract(text: str) -> Slots:
    """Every slot written in ``text``."""
    slots = Slots()
    slots.urls = [url.rstrip(".,;:)]") for url in URL.findall(text)]
    bare = URL.sub(" ", text)
    method = METHOD.search(bare)
    slots.method = method.group(1) if method else None
    slots.sends = bool(_SEND_VERBS.search(bare))
    slots.sql = _sql(text)
    slots.tables = _tables(bare if slots.sql is None else bare.replace(slots.sql, " "))
    slots.files = _unique(FILE.findall(bare))
    slots.items = _items(bare)
    slots.comparisons = comparisons(bare)
    retry = RETRY_TIMES.search(bare)
    if retry:
        slots.attempts = int(retry.group(1) or retry.group(2))
    backoff = BACKOFF.search(bare)
    slots.backoff = backoff.group(1).lower() if backoff else None
    delay = DELAY.search(bare)
    slots.delay = _seconds(delay.group(1), delay.group(2)) if delay else None
    timeout = TIMEOUT.search(bare)
    slots.timeout = _seconds(timeout.group(1), timeout.group(2)) if timeout else None
    in_flight = IN_FLIGHT.search(bare)
    slots.max_in_flight = int(in_flight.group(1)) if in_flight else None
    playbook = PLAYBOOK_PATH.search(bare)
    slots.playbook = playbook.group(1).strip("`\"'") if playbook else None
    slots.command = _command(bare)
    plain = re.sub(r"`[^`]*`|\S+/\S+", " ", bare)  # paths and quoted commands are no schedule
    slots.schedules = [match.strip() for match in SCHEDULE.findall(plain)]
    return slots


def _sql(text: str) -> str | None:
    for quoted in BACKTICK.findall(text):
        if _SQL_START.match(quoted.strip()):
            return quoted.strip()
    for quote in ('"', "'"):
        for part in text.split(quote)[1::2]:
            if _SQL_START.match(part.strip()):
                return part.strip()
    match = SQL.search(text)
    if match and re.search(r"\b(FROM|INTO|TABLE|SET|AS)\b", match.group(1)):
        statement = match.group(1).strip()
        return re.split(r"\s+(?:and then|then)\s+", statement, maxsplit=1)[0].rstrip(" ,.")
    return None


def _tables(text: str) -> list[str]:
    found = [m.group(1) for m in TABLE_AFTER.finditer(text)]
    for match in TABLE.finditer(text):
        name = match.group(1)
        lowered = name.lower()
        if lowered in _STOP_WORDS or lowered in {"it", "them", "this", "that", "each", "every"}:
            continue
        if "." not in name and not (
            match.group(0).lower().startswith("table") or match.group(0).lower().endswith("table")
        ):
            continue  # "from the API": only "table X", "X table" or schema.table count
        found.append(name)
    return _unique(found)


def _items(text: str) -> list[str]:
    bracket = BRACKETS.search(text)
    if bracket:
        return [item.strip(" '\"`") for item in bracket.group(1).split(",") if item.strip(" '\"`")]
    match = re.search(
        r"\b(?:for|in|over|of|across|cities|regions|countries|accounts|ids|symbols|users)\s*:?\s+"
        r"((?:[A-Z][\w-]*|[\w-]*\d[\w-]*)(?:\s*,\s*(?:[A-Z][\w-]*|[\w-]*\d[\w-]*))+"
        r"(?:,?\s+and\s+(?:[A-Z][\w-]*|[\w-]*\d[\w-]*))?)",
        text,
    )
    if not match:
        return []
    parts = re.split(r"\s*,\s*|\s+and\s+", match.group(1))
    return [part.strip() for part in parts if part.strip() and part.strip().lower() != "and"]


def comparisons(text: str) -> list[Comparison]:
    """Thresholds written in ``text`` (``more than 100 rows``, ``error rate above 5%``)."""
    found: list[Comparison] = []
    for match in COMPARISON.finditer(text):
        op = OPERATORS.get(match.group("op").lower())
        if op is None:
            continue
        value = float(match.group("value"))
        if match.group("unit"):
            value = value / 100
        subject = _field(match.group("subject"))
        if subject != "value":
            found.append(Comparison(subject, op, value, match.group(0).strip()))
    if not found:
        reverse = re.search(r"\b(more|fewer|less)\s+than\s+(\d+(?:\.\d+)?)\s+([a-z_]+)", text, re.I)
        if reverse:
            op = ">" if reverse.group(1).lower() == "more" else "<"
            found.append(Comparison("count", op, float(reverse.group(2)), reverse.group(0)))
    return found


def _field(subject: str) -> str:
    tail = re.split(r"\b(?:with|where|whose|having|in|for|on|per|that|which)\b", subject.lower())[
        -1
    ]
    words = [w for w in re.findall(r"[A-Za-z_]\w*", tail) if w not in _STOP_WORDS]
    if not words:
        return "value"
    if words[0] in ("number", "count") or (len(words) == 1 and words[0] in _COUNT_WORDS):
        return "count"
    if words[0] == "total" and len(words) > 1:
        return "total_" + words[-1]
    return "_".join(words[-2:]) if len(words) > 1 else words[0]


def _command(text: str) -> str | None:
    for quoted in BACKTICK.findall(text):
        if not _SQL_START.match(quoted.strip()) and "/" not in quoted.strip().split()[0][:1]:
            return quoted.strip()
        if quoted.strip().startswith(("./", "/")):
            return quoted.strip()
    script = SCRIPT.search(text)
    if script and not script.group(1).endswith(".py"):
        return ("bash " if not script.group(1).startswith(("./", "/")) else "") + script.group(1)
    return None


def _seconds(number: str, unit: str) -> float:
    key = unit.lower()[0] if unit.lower() not in ("ms",) else "ms"
    return float(number) * _UNIT_SECONDS.get(key, 1.0)


def _unique(values: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        seen.setdefault(value, None)
    return list(seen)
