"""Names from words: step, iterator and playbook names, and sentences for ``desc``."""

from __future__ import annotations

import re

from noetl_agent.generation.slots import Slots

_NAME_WORDS = re.compile(r"[a-z]+")
_NAME_SKIP = frozenset(
    re.findall(
        r"\w+",
        """
        a an the to of and or for in on at by with from into then it them this that
        these those all each every its their is are be if when https http www com test
        """,
    )
)


def iterator_name(phrase: str) -> str:
    words = [
        w
        for w in re.findall(r"[a-z_]+", phrase.lower())
        if w not in ("of", "the", "each", "every", "all", "in", "over", "a")
    ]
    noun = words[0] if words else "item"
    return singular(noun)


def singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("ses") or word.endswith("xes"):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def plural(word: str) -> str:
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    return word + "s"


def snake(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def title(description: str) -> str:
    words = [w for w in _NAME_WORDS.findall(description.lower()) if w not in _NAME_SKIP]
    return "_".join(words[:4]) or "generated"


def sentence(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip(" ,.;")
    return text[:1].upper() + text[1:] if text else text


def url_noun(url: str) -> str | None:
    path = re.sub(r"https?://[^/]+", "", url).split("?")[0]
    parts = [p for p in re.split(r"[/{}<>:$]+", path) if p and not p.isdigit()]
    return parts[-1] if parts else None


def file_noun(slots: Slots) -> str | None:
    return slots.files[0].rsplit("/", 1)[-1].split(".")[0] if slots.files else None
