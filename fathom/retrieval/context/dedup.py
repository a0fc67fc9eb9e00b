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

from fathom.retrieval.context.sketch import VocabularySketch, share_fewer
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
    """A text's words, vocabulary and shingles, each built on first use; its vocabulary's sketch if known, else
    maybe that of a text it lies inside (a window a chunk was trimmed to: its vocabulary is a subset of the chunk's)."""

    text: str
    sketch: VocabularySketch | None = None
    outer: VocabularySketch | None = None   # the sketch of a text this one is a run of whole words of
    _words: list[str] | None = None
    _vocabulary: frozenset[str] | None = None
    _grams: frozenset[tuple[str, ...]] | None = None
    _size: int | None = None

    @classmethod
    def of(cls, text: str) -> "Signature":
        return cls(text)

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._words = words(self.text)
        return self._words

    @property
    def vocabulary(self) -> frozenset[str]:
        if self._vocabulary is None:
            self._vocabulary = frozenset(self.words)
        return self._vocabulary

    @property
    def size(self) -> int:
        """Distinct words (read off the sketch without splitting the text)."""
        if self._size is None:
            self._size = self.sketch.size if self.sketch is not None else len(self.vocabulary)
        return self._size

    @property
    def shingles(self) -> frozenset[tuple[str, ...]]:
        if self._grams is None:
            self._grams = shingles(self.words)
        return self._grams

    def own_sketch(self) -> VocabularySketch:
        """The sketch of this very text, made from its vocabulary if none came from ingest."""
        if self.sketch is None:
            self.sketch = VocabularySketch.of_words(self.vocabulary)
        return self.sketch


class Signatures:
    """Each text's signature, made once per assembly (packing checks a chunk, registers it, and the final
    collapse compares the passages, most of which are single chunks: one text, three uses)."""

    def __init__(self) -> None:
        self._memo: dict[str, Signature] = {}
        self.sketches = False      # some text's sketch came from ingest: the index carries them

    def __call__(self, text: str) -> Signature:
        sig = self._memo.get(text)
        if sig is None:
            sig = self._memo[text] = Signature(text)
        return sig

    def know(self, text: str, sketch: VocabularySketch) -> None:
        """``text``'s own sketch (a chunk's, made at ingest)."""
        self._memo.setdefault(text, Signature(text, sketch))
        self.sketches = True

    def sketched(self, text: str) -> Signature:
        """``text``'s signature with its sketch made here (a passage that is no chunk's text: merged chunks, say):
        once the chunks carry sketches, that lets its pairs be ruled out too."""
        sig = self(text)
        sig.own_sketch()
        return sig

    def within(self, text: str, outer: str) -> Signature:
        """``text``'s signature, bounded by ``outer``'s sketch when it is a run of whole words of ``outer`` (a window
        of a chunk: no sketch need be made for it unless that bound is too loose, ``_ruled_out``), else sketched."""
        sig = self._memo.get(text)
        if sig is not None:
            return sig
        host = self._memo.get(outer)
        if host is not None and host.sketch is not None and _whole_words_of(text, outer):
            sig = self._memo[text] = Signature(text, outer=host.sketch)
            return sig
        return self.sketched(text)


def _whole_words_of(text: str, outer: str) -> bool:
    """``text`` occurs in ASCII ``outer`` without cutting a run of letters or digits at either end, so that every word
    of it is a word of ``outer`` (non-ASCII text is folded through NFKC, where this is not checked: no)."""
    i = outer.find(text) if text and outer.isascii() else -1
    if i < 0:
        return False
    j = i + len(text)
    return (i == 0 or not (outer[i - 1].isalnum() and text[0].isalnum())) and \
        (j == len(outer) or not (outer[j].isalnum() and text[-1].isalnum()))


def same_text(a: Signature, b: Signature, threshold: float) -> bool:
    """``a`` and ``b`` are the same text, either way round: Jaccard at ``threshold``, or the smaller mostly inside
    the larger, for both the vocabularies and the shingles. Sketches (``sketch``), where both have one, rule out
    almost every pair before either text is split; the vocabulary test rules out most of the rest before any shingle
    is built; the shingle test tells a re-post from a different text on the same topic."""
    return not _ruled_out(a, b, threshold) and _similar(a.vocabulary, b.vocabulary, threshold) and \
        _similar(a.shingles, b.shingles, threshold)


def _ruled_out(a: Signature, b: Signature, threshold: float) -> bool:
    """The sketches prove the vocabularies share too few words for either test of ``_similar`` (``sketch``)."""
    sa, sb = a.sketch, b.sketch
    if threshold <= 0:
        return False
    if sa is not None and sb is not None:          # both exact (chunks): sizes read off the sketches
        return share_fewer(sa, sb, _share(threshold, sa.size, sb.size))
    oa, ob = sa or a.outer, sb or b.outer
    if oa is None or ob is None:
        return False
    need = _share(threshold, a.size, b.size)
    if share_fewer(oa, ob, need):
        return True
    # The outer bound was too loose: the windows' own sketches (made once each).
    return share_fewer(a.own_sketch(), b.own_sketch(), need)


def _share(threshold: float, size_a: int, size_b: int) -> float:
    """Fewer shared words than this fails both tests of ``_similar``: Jaccard ``t`` needs ``2t / (1 + t)`` of the
    smaller vocabulary, containment ``CONTAINMENT`` of it (a hair below, against float rounding)."""
    return min(2 * threshold / (1 + threshold), CONTAINMENT) * min(size_a, size_b) - 1e-9


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
    sketches = signature.sketches
    kept: list[tuple[Passage, Signature, bool]] = []
    for p in sorted(passages, key=lambda p: p.rank):
        if not sketches:
            sig = signature(p.text)
        elif len(p.chunks) == 1:
            sig = signature.within(p.text, p.chunks[0].text)
        else:
            sig = signature.sketched(p.text)
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
