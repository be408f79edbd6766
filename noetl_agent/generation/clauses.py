"""Splitting a description into clauses: one action each, with its modifiers.

A description such as "For each city in [Paris, Oslo] fetch https://api.test/{city},
retrying 3 times. Then compute the average temperature and, if it is above 20, post it
to https://hooks.test/alert; otherwise ask a human to review." becomes clauses in order,
each holding the text of one action and what modifies it: a loop (``for each city``), a
condition (``if it is above 20``), an ``otherwise`` branch, parallel execution. Splitting
is by sentence, by sequence words (then, after that, finally ...) and by ``and``/commas
that start a new verb; URLs, quoted text and lists are never split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERBS = tuple(
    re.findall(
        r"\w+",
        """
        fetch get download pull read retrieve request call query load insert store save
        write upsert update delete post send push notify alert email upload submit
        compute calculate count sum total average aggregate filter keep drop sort rank
        order group transform clean normalise normalize parse extract dedupe deduplicate
        merge combine join enrich validate check verify ask wait approve review run
        execute invoke trigger retry export import summarise summarize convert map
        publish archive copy move list scan collect anonymise anonymize mask redact
        encrypt decrypt compress zip unzip translate classify score tag label resize render
        generate create build make print log record mark flag reject escalate page text
        sync refresh reload index train predict deploy rollback backup restore bake sing
        email mail tweet find take pick choose select work figure determine identify
        return show compare measure estimate evaluate flatten split fill format hit ping
        """,
    )
)
# a known verb, or a word shaped like one (normalise, classify, aggregate ...)
_VERB = r"(?:(?:" + "|".join(_VERBS) + r")\w*|[a-z]+(?:ise|ize|ify|ate))"
_SEQUENCE = re.compile(
    r"(?:^|,\s*|\s+)(?:and\s+then|and\s+finally|and\s+afterwards|and\s+after\s+that|then|"
    r"after\s+that|afterwards|finally|lastly|"
    r"next|once\s+(?:that\s+is\s+|it\s+is\s+)?done)\b[,:]?\s*",
    re.I,
)
_LEADING_ORDINAL = re.compile(
    r"^\s*(?:first(?:ly)?|second(?:ly)?|third(?:ly)?|to start)\b[,:]?\s*", re.I
)
_AND_VERB = re.compile(r"(?:,\s*(?:and\s+)?|\s+and\s+)(?=" + _VERB + r"\b)", re.I)
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+|(?:^|\s)\d+[.)]\s+")
_CONDITION_FIRST = re.compile(
    r"^(?:only\s+)?(?P<word>if|when|whenever|in case|unless)\s+(?P<cond>.+?)\s*,\s*"
    r"(?:then\s+)?(?P<rest>.+)$",
    re.I,
)
# verbs that start an action and are rarely the subject of a condition
_ACTIONS = re.findall(
    r"\w+",
    """
    fetch get download pull call query load insert store save write post send push notify
    alert email upload submit ask run execute invoke trigger retry stop abort skip escalate
    page approve reject publish archive delete
    """,
)
# "if it fails notify ...": no comma, the action starts at the first such verb
_CONDITION_BARE = re.compile(
    r"^(?:only\s+)?(?P<word>if|when|whenever|unless)\s+(?P<cond>.+?)\s+"
    r"(?P<rest>(?:" + "|".join(_ACTIONS) + r")\b.*)$",
    re.I,
)
_CONDITION_AFTER = re.compile(
    r"^(?P<rest>.+?)\s+(?:but\s+)?(?:only\s+)?(?P<word>if|when|unless)\s+(?P<cond>.+)$", re.I
)
_OTHERWISE = re.compile(r"^(?:otherwise|else|if not|or else)\b[,:]?\s*(?P<rest>.*)$", re.I)
_LOOP_FIRST = re.compile(
    r"^(?:for\s+(?:each|every|all)|iterate\s+over|loop\s+over|looping\s+over|go\s+through|"
    r"repeat\s+for\s+(?:each|every))\s+(?P<what>[^,:]+?)\s*(?:[,:]\s*|\s+(?="
    + _VERB
    + r"\b))(?P<rest>.*)$",
    re.I,
)
_LOOP_AFTER = re.compile(
    r"^(?P<rest>.+?)\s+(?:for\s+(?:each|every)|once\s+per|per)\s+(?P<what>.+)$", re.I
)
PARALLEL = re.compile(
    r"\b(?:in\s+parallel|concurrently|at\s+the\s+same\s+time|simultaneously|at\s+once)\b", re.I
)
URL_TEXT = r"https?://[^\s'\"`<>;]+?(?=[.,;:!?)]*(?:\s|$))"
_PROTECT = re.compile(URL_TEXT + r"|`[^`]*`|\[[^\]]*\]|\"[^\"]*\"")
_AND_CONDITION = re.compile(r"(?:,\s*|\s+)and,?\s+(?=(?:if|when|unless|otherwise)\b)", re.I)


@dataclass(frozen=True, slots=True)
class Clause:
    """One action of a description and what modifies it."""

    text: str
    condition: str | None = None
    negated: bool = False  # the condition was written with `unless`
    otherwise: bool = False  # runs when the previous clause's condition does not hold
    loop: str | None = None  # what the loop goes over, as written ("city in [a, b]")
    parallel: bool = False


def split(description: str) -> list[Clause]:
    """The clauses of ``description`` in order (see the module docstring)."""
    text, kept = _protect(description.strip())
    clauses: list[Clause] = []
    pending_loop: str | None = None
    for sentence in _SENTENCE.split(text):
        sentence = (sentence or "").strip(" .;!?\n")
        if not sentence:
            continue
        for part in _SEQUENCE.split(sentence):
            part = _LEADING_ORDINAL.sub("", part.strip(" ,.;"))
            if not part:
                continue
            for clause in (c for piece in _AND_CONDITION.split(part) for c in _clauses(piece)):
                restored = _restore(clause, kept)
                if not restored.text:
                    pending_loop = restored.loop or pending_loop
                    continue
                if pending_loop and restored.loop is None:
                    restored = Clause(
                        restored.text,
                        restored.condition,
                        restored.negated,
                        restored.otherwise,
                        pending_loop,
                        restored.parallel,
                    )
                    pending_loop = None
                clauses.append(restored)
    return clauses


def _clauses(part: str) -> list[Clause]:
    otherwise = False
    match = _OTHERWISE.match(part)
    if match:
        otherwise, part = True, match.group("rest")
    condition: str | None = None
    negated = False
    match = _CONDITION_FIRST.match(part) or _CONDITION_BARE.match(part)
    if match:
        condition, part = match.group("cond"), match.group("rest")
        negated = match.group("word").lower() == "unless"
    loop: str | None = None
    match = _LOOP_FIRST.match(part)
    if match:
        loop, part = match.group("what"), match.group("rest")
    actions = [a.strip(" ,") for a in _AND_VERB.split(part) if a and a.strip(" ,")]
    if not actions:
        return [Clause("", loop=loop)]
    result: list[Clause] = []
    for index, action in enumerate(actions):
        own_condition, own_negated, own_loop = (
            (condition, negated, loop) if index == 0 else (None, False, None)
        )
        if index > 0 and loop is not None:
            own_loop = None
        if own_condition is None:
            after = _CONDITION_AFTER.match(action)
            if after and not _is_loop_word(after.group("cond")):
                action, own_condition = after.group("rest"), after.group("cond")
                own_negated = after.group("word").lower() == "unless"
        if own_loop is None:
            looped = _LOOP_AFTER.match(action)
            if looped:
                action, own_loop = looped.group("rest"), looped.group("what")
        parallel = bool(PARALLEL.search(action))
        result.append(
            Clause(
                PARALLEL.sub("", action).strip(" ,"),
                own_condition,
                own_negated,
                otherwise and index == 0,
                own_loop,
                parallel,
            )
        )
    return result


def _is_loop_word(text: str) -> bool:
    return text.lower().startswith(("each ", "every "))


def _protect(text: str) -> tuple[str, list[str]]:
    kept: list[str] = []

    def hold(match: re.Match[str]) -> str:
        kept.append(match.group(0))
        return f"\x00{len(kept) - 1}\x00"

    return _PROTECT.sub(hold, text), kept


def _restore(clause: Clause, kept: list[str]) -> Clause:
    def back(text: str | None) -> str | None:
        if text is None:
            return None
        return re.sub("\x00(\\d+)\x00", lambda m: kept[int(m.group(1))], text).strip()

    return Clause(
        back(clause.text) or "",
        back(clause.condition),
        clause.negated,
        clause.otherwise,
        back(clause.loop),
        clause.parallel,
    )
