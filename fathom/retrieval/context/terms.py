"""Query terms in passages: the sentence scores that highlights and trimming read.

A sentence scores the summed weight of the distinct query terms it contains
(BM25's tokenizer: NFKC, casefold, stop words, Snowball stems). A term's
weight is ``ln(1 + N / df)`` over the N candidate passages, so a term every
passage shares (the topic itself) counts for less than one that singles a
passage out. ``df`` is estimated by substring presence of the stem in the
casefolded text (one C-level scan per term, instead of tokenizing every
candidate); the sentence scores themselves use the exact terms. Sentences are
scored only for the passages that are trimmed or highlighted, once each, and
an ASCII text in one pass (``_scan``: each probe searched for once in the
text, only the words it occurs in stemmed; 3-5 % of assembly, the same
scores). No model runs here.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence

from fathom.retrieval.bm25 import stem_word, stem_words, tokenize
from fathom.retrieval.context.words import fold, spaced, split_words
from fathom.retrieval.sentences import sentence_spans

Scored = list[tuple[int, int, float]]    # (start, end, score) of each sentence, offsets into the text


class QueryTerms:
    """The query's terms weighted over the candidate passages' texts, with a per-assembly memo of sentence scores."""

    def __init__(self, query: str, texts: Sequence[str]):
        terms = sorted(set(tokenize(query)))   # a fixed order (and rounded scores, _score)
        folded = [t.casefold() for t in texts]
        n = max(len(texts), 1)
        self.weights = {t: math.log1p(n / max(sum(t in f for f in folded), 1)) for t in terms}
        # A stem less its last letter is a prefix of the words it came from ("studi" <- "study"), so a query term
        # can only be in a sentence that contains its probe; only the words around a probe are stemmed to check.
        self._checks = [(t, w, t[:-1] if len(t) > 3 else t) for t, w in self.weights.items()]
        self._memo: dict[str, Scored] = {}
        self._spans: dict[str, list[tuple[int, int]]] = {}

    def know(self, text: str, spans: list[tuple[int, int]]) -> None:
        """``text``'s sentence spans, split at ingest (``facts.ChunkFacts``): scoring it then splits nothing."""
        self._spans[text] = spans

    def sentences(self, text: str) -> Scored:
        scored = self._memo.get(text)
        if scored is None:
            spans = self._spans.get(text)
            if spans is None:
                spans = sentence_spans(text, 0, len(text))
            scores = self._scan(text, spans) if text.isascii() else None
            if scores is None:
                scored = [(s, e, self._score(text[s:e])) for s, e in spans]
            else:
                scored = [(s, e, sc) for (s, e), sc in zip(spans, scores)]
            self._memo[text] = scored
        return scored

    def _scan(self, text: str, spans: list[tuple[int, int]]) -> list[float] | None:
        """Every sentence's score from one pass over the whole (ASCII) text: each probe is searched for once in the
        text, and only the words it occurs in are stemmed, where scoring sentence by sentence searched every probe
        in every sentence and split each one that held a probe into words. The same scores as ``_score`` on each
        sentence (a lower-cased ASCII text keeps its offsets, and sentences are cut at whitespace, so a word lies in
        one sentence); None, so that the caller scores sentence by sentence, should a word cross a sentence's
        edge or lie outside every sentence."""
        folded = text.lower()
        found: list[set[int]] = [set() for _ in spans]
        starts = [s for s, _ in spans]
        bounds = None
        for k, (term, _, probe) in enumerate(self._checks):
            i = folded.find(probe)
            if i < 0:
                continue
            if bounds is None:
                bounds = spaced(folded)
            while i >= 0:
                start = bounds.rfind(" ", 0, i) + 1
                end = bounds.find(" ", i)
                end = len(bounds) if end < 0 else end
                j = bisect_right(starts, start) - 1
                if j < 0 or end > spans[j][1]:
                    return None
                if stem_word(folded[start:end]) == term:
                    found[j].add(k)
                    end = spans[j][1]          # the term is in this sentence: on to the next one
                i = folded.find(probe, end)
        checks = self._checks
        return [round(sum(checks[k][1] for k in sorted(hit)), 9) if hit else 0.0 for hit in found]

    def _score(self, sentence: str) -> float:
        folded = fold(sentence)
        hits = [check for check in self._checks if check[2] in folded]
        if not hits:
            return 0.0
        words = split_words(folded)
        # Rounded: terms of equal weight (equal df) make ties, which must not break on the order of the sum.
        return round(sum(weight for term, weight, probe in hits
                         if term in stem_words([w for w in words if probe in w])), 9)

    def derive(self, parent: str, start: int, end: int) -> None:
        """Scores of ``parent[start:end]`` (a window of whole sentences) from the parent's, without re-tokenizing."""
        child = parent[start:end]
        if child not in self._memo and parent in self._memo:
            self._memo[child] = [(s - start, e - start, sc) for s, e, sc in self._memo[parent]
                                 if s >= start and e <= end]
