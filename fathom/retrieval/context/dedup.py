"""Near-duplicate collapse and MMR-style diversity over passages.

Two passages are the same text when their word vocabularies and their word
3-gram shingles (NFKC-casefolded words: case, punctuation and spacing do not
matter) both overlap at the threshold (Jaccard, 0.8 by default: the same
abstract re-posted with a changed byline or reflowed still collapses; two
abstracts on one topic share far fewer 3-grams), or when the smaller one is
mostly inside the other (90% of its vocabulary and shingles), as
boilerplate often is; the test is symmetric. The best-scored passage is kept and lists the others as
``duplicates``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fathom.retrieval.context.types import ContextChunk, Duplicate, Passage
from fathom.retrieval.context.words import words

Ranked = TypeVar("Ranked", ContextChunk, Passage)

CONTAINMENT = 0.9


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
    """``a`` and ``b`` are the same text, either way round: Jaccard at ``threshold``, or the smaller mostly inside
    the larger, for both the vocabularies and the shingles. The vocabulary test is cheap and rules out almost every
    pair before any shingle is built; the shingle test tells a re-post from a different text on the same topic."""
    return _similar(a.vocabulary, b.vocabulary, threshold) and _similar(a.shingles, b.shingles, threshold)


def _similar(a: frozenset[Any], b: frozenset[Any], threshold: float) -> bool:
    if not a or not b:
        return False
    small, large = (len(a), len(b)) if len(a) <= len(b) else (len(b), len(a))
    common = len(a & b)
    return common / (small + large - common) >= threshold or common / small >= CONTAINMENT


class Deduplicator:
    """Near-duplicate check in packing order: the first (best-ranked) text of a group owns the later ones.

    Only texts packing reaches are compared (no time is spent on candidates
    the budget never gets to). Every text that went through :meth:`find` has
    been compared with every other document's text registered before or after
    it (``compared``), so the final :func:`collapse` need not compare two of
    them again.
    """

    def __init__(self, threshold: float, signatures: Signatures | None = None):
        self.threshold = threshold
        self.signatures = signatures or Signatures()
        self.seen: list[tuple[int, str, Signature]] = []
        self.compared: set[str] = set()

    def find(self, text: str, document_id: str) -> int | None:
        """The key of a registered text of another document that ``text`` repeats, else None.

        Chunks of one document are never each other's duplicates (the chunker
        cut them apart; repeated boilerplate inside a document is its own).
        """
        others = [(key, sig) for key, doc, sig in self.seen if doc != document_id]
        if not others:
            return None
        sig = self.signatures(text)
        return next((key for key, other in others if same_text(other, sig, self.threshold)), None)

    def register(self, text: str, document_id: str, key: int, found: bool = False) -> None:
        """Remember ``text`` (packed under ``key``); ``found``: it went through :meth:`find` just before."""
        self.seen.append((key, document_id, self.signatures(text)))
        if found:
            self.compared.add(text)


def collapse(passages: Sequence[Passage], threshold: float, signatures: Signatures | None = None,
             compared: Collection[str] = ()) -> tuple[list[Passage], int]:
    """The final check on what goes out: no two passages of different documents are near-identical.

    Chunk-level checks during packing miss copies the chunker cut at other
    places (a re-post under another title shifts the breakpoints) and the
    pieces packing cut or merged; whole passages compare like with like. Two
    passages whose texts are both in ``compared`` (checked against each other
    while packing, :class:`Deduplicator`) are not compared again. Best-ranked
    kept; returns the kept passages and how many were collapsed.
    """
    signature = signatures or Signatures()
    kept: list[tuple[Passage, Signature, bool]] = []
    for p in sorted(passages, key=lambda p: p.rank):
        sig = signature(p.text)
        checked = p.text in compared
        owner = next((k for k, ks, k_checked in kept if k.document_id != p.document_id
                      and not (checked and k_checked) and same_text(ks, sig, threshold)), None)
        if owner is None:
            kept.append((p, sig, checked))
            continue
        owner.duplicates += [Duplicate(p.document_id, p.doc_version, p.source, p.char_start, p.char_end,
                                       p.chunk_ids, p.score), *p.duplicates]
        owner.flags = owner.flags | p.flags
    return [p for p, _, _ in kept], len(passages) - len(kept)


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
