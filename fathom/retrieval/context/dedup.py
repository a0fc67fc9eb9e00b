"""Near-duplicate collapse and MMR-style diversity over passages.

Two passages are the same text when the Jaccard similarity of their word
3-gram shingles reaches the threshold (0.8 by default: the same abstract
re-posted with a changed byline or a reflowed table still collapses;
two abstracts on one topic share far fewer 3-grams), or when the lower-scored
one is contained in the other (90% of its shingles), as boilerplate often is.
The best-scored passage is kept and lists the others as ``duplicates``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from fathom.retrieval.bm25 import tokenize
from fathom.retrieval.context.types import Duplicate, Passage

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
CONTAINMENT = 0.9


def shingles(text: str, n: int = 3) -> frozenset[int]:
    """Hashed word n-grams of the NFKC-casefolded text (punctuation and spacing ignored)."""
    words = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    if len(words) < n:
        return frozenset({hash(tuple(words))}) if words else frozenset()
    return frozenset(hash(tuple(words[i:i + n])) for i in range(len(words) - n + 1))


def _same(a: frozenset[int], b: frozenset[int], threshold: float) -> bool:
    """``b`` (the lower-scored) repeats ``a``: Jaccard >= threshold, or b is mostly inside a."""
    if not a or not b:
        return False
    if len(b) > len(a) and len(a) / len(b) < min(threshold, CONTAINMENT):
        return False                       # both ratios are bounded by the size ratio: no need to intersect
    common = len(a & b)
    return common / (len(a) + len(b) - common) >= threshold or common / len(b) >= CONTAINMENT


def collapse_duplicates(passages: Sequence[Passage], threshold: float) -> list[Passage]:
    """Keep the best-scored of each group of near-identical passages (input in rank order, output too)."""
    kept: list[tuple[Passage, frozenset[int]]] = []
    for p in passages:
        sig = shingles(p.text)
        owner = next((k for k, ksig in kept if _same(ksig, sig, threshold)), None)
        if owner is None:
            kept.append((p, sig))
            continue
        owner.duplicates.append(Duplicate(p.document_id, p.doc_version, p.source, p.char_start, p.char_end,
                                          p.chunk_ids, p.score))
        owner.flags = owner.flags | p.flags    # what the collapsed copy was flagged for still applies to the text
    return [p for p, _ in kept]


def mmr(passages: Sequence[Passage], diversity: float) -> list[Passage]:
    """Maximal marginal relevance: next = argmax (1 - d) * confidence - d * max Jaccard(terms, already chosen).

    ``diversity`` 0 keeps the ranked order. Relevance is the guard's calibrated
    confidence (comparable across passages, unlike raw fused scores).
    """
    if diversity <= 0 or len(passages) < 3:
        return list(passages)
    terms = [frozenset(tokenize(p.text)) for p in passages]
    closest = [0.0] * len(passages)        # max similarity to anything chosen so far
    left = list(range(len(passages)))
    chosen: list[int] = []
    while left:
        best = max(left, key=lambda i: ((1 - diversity) * passages[i].confidence - diversity * closest[i],
                                        -passages[i].rank))
        chosen.append(best)
        left.remove(best)
        for i in left:
            closest[i] = max(closest[i], _jaccard(terms[i], terms[best]))
    return [passages[i] for i in chosen]


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0
