"""The documented step patterns and the matcher that maps a sentence to one of them.

Each pattern is a kind of step a playbook author writes, described by a few example
sentences. :class:`PatternMatcher` embeds the examples once with the bundled
sentence-transformers model and maps a sentence to the pattern of its most similar
example (cosine similarity), or to nothing when no example is similar enough: the
planner then reports the sentence as not mapped. When the model cannot be loaded it
falls back to keyword overlap with the same examples, and says so.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from learning.embedder import Embedder, shared_embedder
from learning.errors import ModelUnavailable

logger = logging.getLogger(__name__)
THRESHOLD = 0.38  # cosine similarity below which a sentence is not mapped
KEYWORD_THRESHOLD = 0.34  # share of a sentence's content words found in a pattern's examples


@dataclass(frozen=True, slots=True)
class StepPattern:
    """A kind of step: its name, the tool kind it becomes, and sentences that describe it."""

    name: str
    kind: str  # tool kind, or "modifier" for patterns that change other steps
    summary: str
    examples: tuple[str, ...]


PATTERNS: tuple[StepPattern, ...] = (
    StepPattern(
        "fetch_http",
        "http",
        "fetch over HTTP: call an API, download a document",
        (
            "fetch data from the REST API",
            "download the JSON from the endpoint",
            "call the web service and get the response",
            "get the latest exchange rates from the API",
            "request the forecast from the weather service",
            "pull the orders from the HTTP endpoint",
            "read the status page over HTTP",
        ),
    ),
    StepPattern(
        "send_http",
        "http",
        "send over HTTP: post results to a webhook or an API",
        (
            "post the results to the webhook",
            "send a notification to the Slack webhook",
            "push the summary to the reporting API",
            "notify the team by calling the alert endpoint",
            "upload the report to the service",
            "submit the records to the API with a POST request",
        ),
    ),
    StepPattern(
        "transform_python",
        "python",
        "transform in python: compute, filter, aggregate, reshape records",
        (
            "transform the records",
            "compute the average price",
            "filter out the rows with missing values",
            "aggregate the results by region",
            "count the items",
            "calculate the total amount",
            "sort the results by score",
            "clean and normalise the data",
            "parse the response and extract the fields",
            "deduplicate the list",
            "sum the values",
            "keep only the items with a rate above 1.5",
            "keep the top 10 by score",
            "work out the share of each category",
        ),
    ),
    StepPattern(
        "query_duckdb",
        "duckdb",
        "query DuckDB: analytical SQL over local files and tables",
        (
            "query the parquet file with duckdb",
            "load the CSV file into a duckdb table",
            "run an analytical SQL query in duckdb",
            "read the local csv file",
            "summarise the sales table in duckdb",
        ),
    ),
    StepPattern(
        "query_postgres",
        "postgres",
        "query PostgreSQL: read from or write to a database table",
        (
            "query the customers table in postgres",
            "insert the rows into the database table",
            "load the results into the warehouse",
            "update the status column in the orders table",
            "read the records from the postgres database",
            "store the data in the database",
            "save the results to the table",
            "write the records to postgres",
        ),
    ),
    StepPattern(
        "loop",
        "modifier",
        "loop over a list: run an action once per item",
        (
            "for each city",
            "for every item in the list",
            "iterate over the accounts",
            "repeat for each of the regions",
            "loop over the ids",
            "one by one for every record",
        ),
    ),
    StepPattern(
        "fan_out",
        "modifier",
        "fan out and join: run several actions in parallel, then combine their results",
        (
            "in parallel",
            "call these services at the same time",
            "fan out to several APIs and join the results",
            "run the requests concurrently and merge them",
            "combine the results of the parallel calls",
        ),
    ),
    StepPattern(
        "ask_human",
        "approval",
        "ask a human: pause for a person's approval or review",
        (
            "ask a human to approve",
            "wait for a manager to review and sign off",
            "get approval before loading",
            "have someone check the results manually",
            "request a human review",
            "pause until an operator confirms",
        ),
    ),
    StepPattern(
        "call_playbook",
        "playbook",
        "call a sub-playbook: run another catalog playbook as a step",
        (
            "run the playbook",
            "call the sub-playbook",
            "invoke the existing workflow",
            "trigger the cleanup playbook",
            "reuse the load playbook as a step",
        ),
    ),
    StepPattern(
        "retry",
        "modifier",
        "retry on transient errors: attempts with backoff for timeouts, 429 and 5xx",
        (
            "retry on transient errors",
            "retry up to 3 times with exponential backoff",
            "try again if the request times out",
            "retry when the server is busy or rate limited",
            "make it resilient to temporary failures",
        ),
    ),
    StepPattern(
        "run_shell",
        "shell",
        "run a shell command or script",
        (
            "run the shell script",
            "execute the command",
            "run the backup script",
            "invoke the command line tool",
        ),
    ),
)
BY_NAME = {pattern.name: pattern for pattern in PATTERNS}


@dataclass(frozen=True, slots=True)
class Match:
    """The pattern a sentence maps to (``None`` when none is close), how close, and how
    the match was made (``embedding`` or ``keywords``)."""

    pattern: StepPattern | None
    score: float
    method: str
    runner_up: str | None = None


class PatternMatcher:
    """Maps sentences to step patterns by meaning (see the module docstring)."""

    def __init__(
        self,
        patterns: Sequence[StepPattern] = PATTERNS,
        *,
        embedder: Embedder | None = None,
        threshold: float = THRESHOLD,
    ) -> None:
        self.patterns = list(patterns)
        self.threshold = threshold
        self._embedder = embedder
        self._vectors: list[tuple[StepPattern, list[float]]] | None = None
        self._unavailable: str | None = None
        self._lock = threading.Lock()

    @property
    def method(self) -> str:
        """``embedding`` while the model works, ``keywords`` once it could not load."""
        return "keywords" if self._unavailable else "embedding"

    @property
    def unavailable_reason(self) -> str | None:
        """Why the model could not be used (None while it can)."""
        return self._unavailable

    def match(self, sentences: Sequence[str]) -> list[Match]:
        """The best pattern for each sentence, in order (blocking: run it off the loop)."""
        if not sentences:
            return []
        vectors = self._example_vectors()
        if vectors is None:
            return [self._keywords(sentence) for sentence in sentences]
        assert self._embedder is not None
        embedded = self._embedder.embed([_normalise(s) for s in sentences])
        return [self._closest(vector, vectors) for vector in embedded]

    def _example_vectors(self) -> list[tuple[StepPattern, list[float]]] | None:
        with self._lock:
            if self._vectors is not None or self._unavailable:
                return self._vectors
            examples = [(p, e) for p in self.patterns for e in p.examples]
            try:
                if self._embedder is None:
                    self._embedder = shared_embedder()
                vectors = self._embedder.embed([text for _, text in examples])
            except ModelUnavailable as exc:
                logger.warning("step patterns matched by keywords: %s", exc)
                self._unavailable = str(exc)
                return None
            self._vectors = [(p, v) for (p, _), v in zip(examples, vectors, strict=True)]
            return self._vectors

    def _closest(
        self, vector: list[float], examples: list[tuple[StepPattern, list[float]]]
    ) -> Match:
        best: dict[str, tuple[float, StepPattern]] = {}
        for pattern, example in examples:
            score = sum(a * b for a, b in zip(vector, example, strict=True))
            if score > best.get(pattern.name, (-2.0, pattern))[0]:
                best[pattern.name] = (score, pattern)
        ranked = sorted(best.values(), key=lambda item: item[0], reverse=True)
        score, pattern = ranked[0]
        runner_up = ranked[1][1].name if len(ranked) > 1 else None
        if score < self.threshold:
            return Match(None, score, "embedding", pattern.name)
        return Match(pattern, score, "embedding", runner_up)

    def _keywords(self, sentence: str) -> Match:
        words = _content_words(sentence)
        if not words:
            return Match(None, 0.0, "keywords")
        scored = []
        for pattern in self.patterns:
            vocabulary = {w for example in pattern.examples for w in _content_words(example)}
            scored.append((len(words & vocabulary) / len(words), pattern))
        scored.sort(key=lambda item: item[0], reverse=True)
        score, pattern = scored[0]
        if score < KEYWORD_THRESHOLD:
            return Match(None, score, "keywords", pattern.name)
        return Match(pattern, score, "keywords", scored[1][1].name)


_FILLER = frozenset(
    re.findall(
        r"\w+",
        """
        a an the to of and or for in on at by with from into then it them this that
        these those all each every its their be is are was were as up our my your we i
        you please
        """,
    )
)


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if w not in _FILLER and len(w) > 2}


def _normalise(sentence: str) -> str:
    """The sentence without URLs, SQL and quoted values, which only blur its meaning."""
    text = re.sub(r"https?://\S+", "the endpoint", sentence)
    text = re.sub(r"`[^`]*`", "the command", text)
    return re.sub(r"\s+", " ", text).strip()
