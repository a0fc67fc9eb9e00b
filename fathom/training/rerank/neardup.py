"""Near-duplicate detection between passages, to keep positives out of the negatives.

Corpora repeat themselves: the same abstract under two ids, a document and its
revised copy, a section quoted in full elsewhere. Labelling such a copy as a
negative teaches the model to reject exactly what it should find. Word
3-gram shingles compared by *overlap coefficient* (shared shingles over the
smaller set) also catch containment (a short passage inside a longer one),
which plain Jaccard misses.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\w+")


def shingles(text: str, n: int = 3) -> frozenset[tuple[str, ...]]:
    """Lower-cased word n-grams; a text shorter than ``n`` words is one shingle of all its words."""
    tokens = _TOKEN.findall(text.casefold())
    if len(tokens) < n:
        return frozenset({tuple(tokens)}) if tokens else frozenset()
    return frozenset(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def overlap(a: frozenset[tuple[str, ...]], b: frozenset[tuple[str, ...]]) -> float:
    """|A ∩ B| / min(|A|, |B|): 1.0 when one passage is contained in the other."""
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


class NearDuplicateFilter:
    """Answers "is this passage a near-copy of one of the positives?" for one query's list."""

    def __init__(self, positives: list[str], threshold: float = 0.5):
        self.threshold = threshold
        self._positives = [shingles(p) for p in positives]

    def is_duplicate(self, passage: str) -> bool:
        s = shingles(passage)
        return any(overlap(s, p) >= self.threshold for p in self._positives)
