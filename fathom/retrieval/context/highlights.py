"""Which sentences of a passage answer the query: its highlights, and its best window when it must be trimmed.

Sentence scores come from ``terms.QueryTerms`` (query-term weights over the
candidates); nothing here tokenizes on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from fathom.retrieval.context.passages import last_fit, overlapping, proportional, word_ends, word_starts
from fathom.retrieval.context.terms import QueryTerms
from fathom.retrieval.context.tokens import TokenCost, seam
from fathom.retrieval.context.types import Highlight, Passage


def highlights(p: Passage, terms: QueryTerms, n: int) -> list[Highlight]:
    """The ``n`` best-matching sentences (best first); sentences that match no query term are never highlighted."""
    if n <= 0:
        return []
    ranked = sorted((s for s in terms.sentences(p.text) if s[2] > 0), key=lambda s: (-s[2], s[0]))
    return [Highlight(s, e, round(score, 4)) for s, e, score in ranked[:n]]


def best_window(p: Passage, terms: QueryTerms, room: int, cost: TokenCost) -> Passage | None:
    """The contiguous run of the passage's sentences that best matches the query within ``room`` tokens.

    Scores are non-negative, so for each last sentence the best window is the
    longest one that fits (two pointers, linear); among windows of equal
    score the one with the most text wins (context around the best sentences
    helps the model and costs nothing the budget had not allowed). What room
    is left after whole sentences is filled with the next sentence's first
    words. The result is a sub-span of the passage, so its text is still the
    stored document's characters. None when not even one word fits.
    """
    sents = terms.sentences(p.text)
    if not sents:
        return None
    costs = [cost(p.text[s:e]) + 1 for s, e, _ in sents]     # +1: the separator before the next sentence
    best: tuple[float, int, int, int] | None = None
    lo, total, gain = 0, 0, 0.0
    for hi, (c, (_, _, score)) in enumerate(zip(costs, sents)):
        total += c
        gain += score
        while total > room and lo <= hi:
            total -= costs[lo]
            gain -= sents[lo][2]
            lo += 1
        if lo <= hi and (best is None or gain > best[0] + 1e-9 or (gain > best[0] - 1e-9 and total > best[3])):
            best = (gain, lo, hi, total)
    if best is None:
        i = max(range(len(sents)), key=lambda i: (sents[i][2], -sents[i][0]))
        s, e, _ = sents[i]
        return _prefix(p, s, s, e, room, cost, terms, whole=costs[i] - 1)
    _, lo, hi, total = best
    if room - total > 1 and hi + 1 < len(sents):      # the rest: the next sentence's first words ...
        return _prefix(p, sents[lo][0], sents[hi + 1][0], sents[hi + 1][1], room, cost, terms, total,
                       whole=costs[hi + 1] - 1, run=lambda: _run(p.text, sents, lo, hi, cost, lead=False),
                       cut=sents[hi][1]) or _cut(p, sents[lo][0], sents[hi][1], terms)
    if room - total > 1 and lo > 0:                    # ... or, at the passage's end, the previous one's last words
        return _suffix(p, sents[lo - 1][0], sents[lo][0], sents[hi][1], room, cost, terms, total - 1,
                       whole=costs[lo - 1] - 1, run=lambda: _run(p.text, sents, lo, hi, cost, lead=True),
                       cut=sents[lo - 1][1]) or _cut(p, sents[lo][0], sents[hi][1], terms)
    return _cut(p, sents[lo][0], sents[hi][1], terms)


def _run(text: str, sents: list[tuple[int, int, float]], lo: int, hi: int, cost: TokenCost,
         lead: bool) -> int | None:
    """Exact tokens of sentences ``lo..hi`` (``lead``: with the space before ``lo``, from the previous sentence's end)
    added up from the sentences' counts and leads, stored at ingest, so no window is tokenized: only with a tokenizer
    that ``splits_at_spaces``, and a ``seam`` at every sentence end the sum crosses and at the run's cut edge (after
    ``hi``, or before ``lo`` with ``lead``), where the words ``_prefix`` / ``_suffix`` add join it. Else None."""
    if not cost.splits_at_spaces:
        return None
    if not all(seam(text, sents[k][1]) for k in (range(lo - 1, hi) if lead else range(lo, hi + 1))):
        return None
    leads = sum(cost(text[sents[k - 1][1]:sents[k][1]]) for k in range(lo + 1, hi + 1))
    return leads + cost(text[sents[lo - 1][1]:sents[lo][1]] if lead else text[sents[lo][0]:sents[lo][1]])


def _prefix(p: Passage, s: int, at: int, e: int, room: int, cost: TokenCost, terms: QueryTerms, base: int = 0,
            whole: int = 0, run: Callable[[], int | None] | None = None, cut: int = 0) -> Passage | None:
    """``p.text[s:x]`` for a word boundary ``x`` in ``(at, e]`` within ``room`` tokens (``last_fit``, guided by
    ``whole``, the tokens of the sentence ``p.text[at:e]``).

    ``base`` estimates the tokens of ``p.text[s:at]`` (the whole sentences already chosen): the search then counts
    only the words after ``at``, and the one text it picks is checked against ``room``; should that miss (a BPE
    merge across the seam), whole prefixes are counted. Counting short pieces instead of the whole window at each
    step was most of the cost of trimming a passage. The check adds up where it can (``run``: the exact tokens of
    ``p.text[s:cut]``, ``_run``; then only ``p.text[cut:x]`` is tokenized, and the sum recorded), else counts the
    window whole.
    """
    ends = word_ends(p.text, at, e) + [e]
    guess = proportional(len(ends), room - base, whole)
    if base and at > s:
        i = last_fit(ends, lambda x: cost(p.text[at:x]) <= room - base, guess)
        if i >= 0 and _fits(p.text, s, ends[i], room, cost, run() if run else None, cut):
            return _cut(p, s, ends[i], terms)
    i = last_fit(ends, lambda x: cost(p.text[s:x]) <= room, guess)
    return _cut(p, s, ends[i], terms) if i >= 0 else None


def _suffix(p: Passage, s: int, at: int, e: int, room: int, cost: TokenCost, terms: QueryTerms, base: int = 0,
            whole: int = 0, run: Callable[[], int | None] | None = None, cut: int = 0) -> Passage | None:
    """``p.text[x:e]`` for a word start ``x`` in ``[s, at)`` within ``room`` tokens (``base``: as in _prefix, for
    ``p.text[at:e]``; ``whole``: the tokens of the sentence starting at ``s``; ``run``: the exact tokens of
    ``p.text[cut:e]``, as in _prefix)."""
    starts = ([s] + word_starts(p.text, s, at))[::-1]      # nearest ``at`` first: the search keeps the last fit
    guess = proportional(len(starts), room - base, whole)
    if base:
        i = last_fit(starts, lambda x: cost(p.text[x:at]) <= room - base, guess)
        if i >= 0 and _fits(p.text, starts[i], e, room, cost, run() if run else None, cut, words_before=True):
            return _cut(p, starts[i], e, terms)
    i = last_fit(starts, lambda x: cost(p.text[x:e]) <= room, guess)
    return _cut(p, starts[i], e, terms) if i >= 0 else None


def _fits(text: str, s: int, e: int, room: int, cost: TokenCost, run: int | None, cut: int,
          words_before: bool = False) -> bool:
    """``text[s:e]`` fits in ``room``. Added up where ``run`` is known: the exact tokens of the whole sentences on
    one side of ``cut`` (after it with ``words_before``, else before it) plus those of the words on the other side,
    the sum then recorded (``TokenCost.record``: the final count of the context does not tokenize the window
    either); else the window is counted whole."""
    if run is None or not s < cut < e:
        return cost(text[s:e]) <= room
    n = run + cost(text[s:cut] if words_before else text[cut:e])
    if n > room:
        return False
    cost.record(text[s:e], n)
    return True


def _cut(p: Passage, s: int, e: int, terms: QueryTerms) -> Passage:
    terms.derive(p.text, s, e)
    if p.char_start is None:
        return replace(p, text=p.text[s:e], trimmed=True)
    start, end = p.char_start + s, p.char_start + e
    return replace(p, text=p.text[s:e], char_start=start, char_end=end, chunks=overlapping(p.chunks, start, end),
                   trimmed=True)
