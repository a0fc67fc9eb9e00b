"""Near-duplicate collapse and MMR-style diversity over passages.

Two passages are the same text when their word vocabularies and their word
3-gram shingles (NFKC-casefolded words: case, punctuation and spacing do not
matter) both overlap at the threshold (Jaccard, 0.8 by default: the same
abstract re-posted with a changed byline or reflowed still collapses; two
abstracts on one topic share far fewer 3-grams), or when the lower-scored
one is mostly inside the other (90% of its vocabulary and shingles), as
boilerplate often is. The best-scored passage is kept and lists the others as
``duplicates``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fathom.retrieval.context.types import ContextChunk, Duplicate, Passage

Ranked = TypeVar("Ranked", ContextChunk, Passage)

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
CONTAINMENT = 0.9


def words(text: str) -> list[str]:
    folded = text.casefold() if text.isascii() else unicodedata.normalize("NFKC", text).casefold()
    return _WORD.findall(folded)


def shingles(w: Sequence[str]) -> frozenset[tuple[str, ...]]:
    """Word 3-grams (a text of fewer words: its words as one gram)."""
    if len(w) < 3:
        return frozenset({tuple(w)}) if w else frozenset()
    return frozenset(zip(w, w[1:], w[2:]))


@dataclass(slots=True)
class Signature:
    words: list[str]
    vocabulary: frozenset[str]
    grams: frozenset[tuple[str, ...]] | None = None

    @classmethod
    def of(cls, text: str) -> "Signature":
        w = words(text)
        return cls(w, frozenset(w))

    @property
    def shingles(self) -> frozenset[tuple[str, ...]]:
        if self.grams is None:
            self.grams = shingles(self.words)
        return self.grams


class Signatures:
    """Each text's signature, computed once per assembly (packing checks a chunk, registers it, and the final
    collapse compares the passages, most of which are single chunks: one text, three uses)."""

    def __init__(self) -> None:
        self._memo: dict[str, Signature] = {}

    def __call__(self, text: str) -> Signature:
        sig = self._memo.get(text)
        if sig is None:
            sig = self._memo[text] = Signature.of(text)
        return sig


def same_text(a: Signature, b: Signature, threshold: float) -> bool:
    """``b`` (the lower-scored) repeats ``a``. The vocabulary test is cheap and rules out almost every pair before
    any shingle is built; the shingle test tells a re-post from a different text on the same topic."""
    return _similar(a.vocabulary, b.vocabulary, threshold) and _similar(a.shingles, b.shingles, threshold)


def _similar(a: frozenset[Any], b: frozenset[Any], threshold: float) -> bool:
    if not a or not b:
        return False
    if len(b) > len(a) and len(a) / len(b) < min(threshold, CONTAINMENT):
        return False                       # both ratios are bounded by the size ratio: no need to intersect
    common = len(a & b)
    return common / (len(a) + len(b) - common) >= threshold or common / len(b) >= CONTAINMENT


class Deduplicator:
    """Near-duplicate check in packing order: the first (best-ranked) text of a group owns the later ones.

    Only texts packing reaches are compared (no time is spent on candidates
    the budget never gets to).
    """

    def __init__(self, threshold: float, signatures: Signatures | None = None):
        self.threshold = threshold
        self.signatures = signatures or Signatures()
        self.seen: list[tuple[int, str, Signature]] = []

    def find(self, text: str, document_id: str) -> int | None:
        """The key of a registered text of another document that ``text`` repeats, else None.

        Chunks of one document are never each other's duplicates (the chunker
        cut them apart; repeated boilerplate inside a document is its own).
        """
        others = [(key, sig) for key, doc, sig in self.seen if doc != document_id]
        if not others:
            return None
        sig = self.signatures(text)
        n, t = len(sig.vocabulary), self.threshold
        # Only a text of comparable size can be a Jaccard match, or a larger one that contains this one.
        return next((key for key, other in others if (len(other.vocabulary) * t <= n or n == 0)
                     and same_text(other, sig, t)), None)

    def register(self, text: str, document_id: str, key: int) -> None:
        self.seen.append((key, document_id, self.signatures(text)))


def collapse(passages: Sequence[Passage], threshold: float,
             signatures: Signatures | None = None) -> tuple[list[Passage], int]:
    """The final check on what goes out: no two passages of different documents are near-identical either way.

    Chunk-level checks during packing miss copies the chunker cut at other
    places (a re-post under another title shifts the breakpoints); whole
    passages compare like with like. Best-ranked kept; returns the kept
    passages and how many were collapsed.
    """
    signature = signatures or Signatures()
    kept: list[tuple[Passage, Signature]] = []
    for p in sorted(passages, key=lambda p: p.rank):
        sig = signature(p.text)
        owner = next((k for k, ks in kept if k.document_id != p.document_id
                      and (same_text(ks, sig, threshold) or same_text(sig, ks, threshold))), None)
        if owner is None:
            kept.append((p, sig))
            continue
        owner.duplicates += [Duplicate(p.document_id, p.doc_version, p.source, p.char_start, p.char_end,
                                       p.chunk_ids, p.score), *p.duplicates]
        owner.flags = owner.flags | p.flags
    return [p for p, _ in kept], len(passages) - len(kept)


def mmr(passages: Sequence[Ranked], diversity: float) -> list[Ranked]:
    """Maximal marginal relevance: next = argmax (1 - d) * confidence - d * max vocabulary Jaccard with the chosen.

    ``diversity`` 0 keeps the ranked order. Relevance is the guard's calibrated
    confidence (comparable across chunks, unlike raw fused scores).
    """
    if diversity <= 0 or len(passages) < 3:
        return list(passages)
    vocab = [frozenset(words(p.text)) for p in passages]
    closest = [0.0] * len(passages)        # max similarity to anything chosen so far
    left = list(range(len(passages)))
    chosen: list[int] = []
    while left:
        best = max(left, key=lambda i: ((1 - diversity) * passages[i].confidence - diversity * closest[i],
                                        -passages[i].rank))
        chosen.append(best)
        left.remove(best)
        for i in left:
            closest[i] = max(closest[i], _jaccard(vocab[i], vocab[best]))
    return [passages[i] for i in chosen]


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0
