"""Which sentences of a passage answer the query: highlights, and the best window when a passage must be trimmed.

A sentence scores the summed weight of the distinct query terms it contains
(BM25's tokenizer: NFKC, casefold, stop words, stemming). A term's weight is
``ln(1 + N / df)`` over the N passages of this answer, so a term that every
passage shares (the topic itself) counts for less than one that singles a
passage out. No model runs here: this is cheap enough for every request.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

from fathom.retrieval.bm25 import tokenize
from fathom.retrieval.context.passages import overlapping, sentence_spans
from fathom.retrieval.context.types import Highlight, Passage


class QueryTerms:
    """The query's terms with weights from the passages they will score."""

    def __init__(self, query: str, passages: Sequence[Passage]):
        terms = set(tokenize(query))
        df = dict.fromkeys(terms, 0)
        for p in passages:
            for t in terms & set(tokenize(p.text)):
                df[t] += 1
        n = max(len(passages), 1)
        self.weights = {t: math.log1p(n / max(d, 1)) for t, d in df.items()}

    def score(self, text: str) -> float:
        return sum(self.weights.get(t, 0.0) for t in set(tokenize(text)))


def scored_sentences(text: str, terms: QueryTerms) -> list[tuple[int, int, float]]:
    """(start, end, score) of each sentence of ``text``, offsets into ``text``."""
    return [(s, e, terms.score(text[s:e])) for s, e in sentence_spans(text, 0, len(text))]


def highlights(p: Passage, terms: QueryTerms, n: int) -> list[Highlight]:
    """The ``n`` best-matching sentences (best first); sentences that match no query term are never highlighted."""
    if n <= 0:
        return []
    ranked = sorted((s for s in scored_sentences(p.text, terms) if s[2] > 0), key=lambda s: (-s[2], s[0]))
    return [Highlight(s, e, round(score, 4)) for s, e, score in ranked[:n]]


def best_window(p: Passage, terms: QueryTerms, room: int, cost: Callable[[str], int]) -> Passage | None:
    """The contiguous run of the passage's sentences that best matches the query within ``room`` tokens.

    Scores are non-negative, so for each last sentence the best window is the
    longest one that fits (two pointers, linear). A single sentence longer than
    ``room`` is cut at a word boundary. The result is a sub-span of the
    passage, so its text is still the stored document's characters. None when
    not even one word fits.
    """
    sents = scored_sentences(p.text, terms)
    if not sents:
        return None
    costs = [cost(p.text[s:e]) + 1 for s, e, _ in sents]     # +1: the separator before the next sentence
    best: tuple[float, int, int] | None = None
    lo, total, gain = 0, 0, 0.0
    for hi, (c, (_, _, score)) in enumerate(zip(costs, sents)):
        total += c
        gain += score
        while total > room and lo <= hi:
            total -= costs[lo]
            gain -= sents[lo][2]
            lo += 1
        if lo <= hi and (best is None or gain > best[0] + 1e-12):
            best = (gain, lo, hi)
    if best is not None:
        _, lo, hi = best
        return _cut(p, sents[lo][0], sents[hi][1])
    s, e, _ = max(sents, key=lambda x: (x[2], -x[0]))
    return _prefix(p, s, e, room, cost)


def _prefix(p: Passage, s: int, e: int, room: int, cost: Callable[[str], int]) -> Passage | None:
    """The longest word-boundary prefix of ``p.text[s:e]`` within ``room`` tokens (binary search over words)."""
    ends = [i for i in range(s + 1, e) if p.text[i] == " " and p.text[i - 1] != " "] + [e]
    lo, hi, found = 0, len(ends) - 1, -1
    while lo <= hi:
        mid = (lo + hi) // 2
        if cost(p.text[s:ends[mid]]) <= room:
            found, lo = mid, mid + 1
        else:
            hi = mid - 1
    return _cut(p, s, ends[found]) if found >= 0 else None


def _cut(p: Passage, s: int, e: int) -> Passage:
    if p.char_start is None:
        return replace(p, text=p.text[s:e], trimmed=True)
    start, end = p.char_start + s, p.char_start + e
    return replace(p, text=p.text[s:e], char_start=start, char_end=end, chunks=overlapping(p.chunks, start, end),
                   trimmed=True)
