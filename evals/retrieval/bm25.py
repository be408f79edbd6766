"""Okapi BM25: the keyword baseline the semantic search is compared with.

Scores ``sum over query terms t of idf(t) * f(t, d) * (k1 + 1) / (f(t, d) + k1 * (1 - b +
b * |d| / avgdl))`` with ``idf(t) = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5))`` (the
non-negative variant), over lowercase alphanumeric tokens.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    """Lowercase alphanumeric runs of ``text``."""
    return _TOKEN.findall(text.lower())


class BM25:
    """An index of documents that ranks them for a query."""

    def __init__(self, documents: Sequence[str], *, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self.docs = [Counter(tokens(text)) for text in documents]
        self.lengths = [sum(doc.values()) for doc in self.docs]
        self.avgdl = (sum(self.lengths) / len(self.lengths)) if self.lengths else 0.0
        frequency: Counter[str] = Counter()
        for doc in self.docs:
            frequency.update(doc.keys())
        total = len(self.docs)
        self.idf = {
            term: math.log(1 + (total - count + 0.5) / (count + 0.5))
            for term, count in frequency.items()
        }

    def score(self, query: str, index: int) -> float:
        doc, length = self.docs[index], self.lengths[index]
        norm = self.k1 * (1 - self.b + self.b * length / (self.avgdl or 1.0))
        total = 0.0
        for term in tokens(query):
            f = doc.get(term, 0)
            if f:
                total += self.idf[term] * f * (self.k1 + 1) / (f + norm)
        return total

    def rank(self, query: str) -> list[int]:
        """Document indexes, best first (ties keep document order)."""
        scores = [self.score(query, i) for i in range(len(self.docs))]
        return sorted(range(len(self.docs)), key=lambda i: -scores[i])
