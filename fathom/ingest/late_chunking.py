"""Late chunking: one encoder pass per section gives the breakpoints and the stored chunk vectors.

The semantic chunker runs the encoder twice over the same words: once per
sentence (to find where the topic moves) and once per finished chunk (the
vector that is stored). Here each section's index text (title path + body)
is tokenized once, with offsets, and encoded once:

* **a section that fits the budget is one chunk**, and its pass *is* the
  chunk's plain encode (the same vector the semantic chunker would store);
* **a longer section** is encoded in windows of up to ``window`` tokens (the
  model's 512 positions; the title path is repeated at the head of every
  window), and the token states are mean-pooled over each sentence's tokens
  (breakpoints: the adjacent-sentence cosines, cut below the section's
  percentile, as in the semantic chunker) and over each chunk's tokens (its
  stored vector, which so also saw the rest of its section).

Token counts of every span come from the one tokenizer pass (offsets), never
from re-tokenising pieces, and the cuts follow the semantic chunker's rules
(sentences packed greedily under the budget, overlong sentences cut at word
starts, pieces under ``min_tokens`` merged into their neighbour).

Caching: a late chunk's vector depends on its section, so nothing is cached
by chunk text. A one-chunk section is cached by its text (it is a plain
encode, shared with the other chunkers' cache entries); a longer section
caches each sentence's pooled state under the section text + window + the
sentence's token span, from which the breakpoints and every chunk vector
are recomputed without the encoder (a chunk's mean is the token-weighted
mean of its sentences' means).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fathom.ingest.chunking import PATH_SEP, Chunk, SectionEncoder, _Section, _sections, _Span, breakpoint_groups
from fathom.ingest.chunking import ChunkerSpec
from fathom.ingest.document import ParsedDocument
from fathom.ingest.indexer import PoolRequest
from fathom.retrieval.models.embedder import SpanJob


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else v.astype(np.float32)


@dataclass(slots=True)
class _Piece:
    """A sentence (or a word window of an overlong one) as a token range of its section's encoding."""

    start: int          # char offsets into the document text
    end: int
    page: int | None
    a: int              # [a, b): content-token positions (0 = first token after [CLS])
    b: int

    @property
    def n(self) -> int:
        return self.b - self.a


@dataclass(slots=True)
class _LatePlan:
    """One section: its pieces, budget and the encoder request that will give its vectors."""

    path: tuple[str, ...]
    pieces: list[_Piece]
    budget: int
    prefix_tokens: int          # the title path's tokens, [CLS]/[SEP] included (as the budget counts them)
    request: PoolRequest
    single: bool                # the section is one chunk: the request is its plain encode

    @property
    def tokens(self) -> int:
        return sum(p.n for p in self.pieces) + 2


@dataclass
class LateChunker:
    encoder: SectionEncoder
    max_tokens: int = 256
    min_tokens: int = 48
    breakpoint_percentile: float = 90.0
    window: int = 512
    max_length: int = 256                      # the model's trained length: a one-chunk section is encoded like this
    name: str = "late"

    @property
    def spec(self) -> ChunkerSpec:
        return ChunkerSpec("late", self.max_tokens, self.min_tokens, self.breakpoint_percentile, window=self.window)

    def chunk(self, doc: ParsedDocument) -> list[Chunk]:
        return self.chunk_batch([doc])[0]

    def chunk_batch(self, docs: Sequence[ParsedDocument]) -> list[list[Chunk]]:
        """Chunk and embed several documents: one tokenizer call and one length-bucketed encoder run for all."""
        sections = [(d, sec) for d, doc in enumerate(docs) for sec in _sections(doc, sentences=True)]
        heads = [(PATH_SEP.join(sec.path) + "\n") if sec.path else "" for _, sec in sections]
        texts = [head + docs[d].text[sec.spans[0].start:sec.spans[-1].end] for (d, sec), head in zip(sections, heads)]
        encodings = self.encoder.tokenize(texts)
        plans = [self._plan(docs[d].text, sec, head, text, enc)
                 for (d, sec), head, text, enc in zip(sections, heads, texts, encodings)]
        pooled = self.encoder.pool([p.request for p in plans])
        out: list[list[Chunk]] = [[] for _ in docs]
        for (d, _), plan, means in zip(sections, plans, pooled):
            out[d].extend(self._chunks(docs[d].text, plan, means))
        return out

    # --- planning: token ranges from one tokenizer pass ------------------------------------------
    def _plan(self, doc_text: str, sec: _Section, head: str, text: str, enc: object) -> _LatePlan:
        ids = np.asarray(enc.ids, dtype=np.int64)                     # type: ignore[attr-defined]
        offsets = enc.offsets[1:-1]                                    # type: ignore[attr-defined]
        starts = np.fromiter((o[0] for o in offsets), dtype=np.int64, count=len(offsets))
        prefix_n = int(np.searchsorted(starts, len(head) - 1, "left")) if head else 0
        budget = max(16, self.max_tokens - (prefix_n + 2 if head else 0))   # as SemanticChunker._budget
        base = sec.spans[0].start - len(head)                         # doc offset = text offset + base
        pieces: list[_Piece] = []
        for span in sec.spans:
            a = int(np.searchsorted(starts, span.start - base, "left"))
            b = int(np.searchsorted(starts, span.end - base, "left"))
            pieces.extend(self._split_long(span, a, b, budget, offsets, starts, base))
        total = sum(p.n for p in pieces) + 2
        prefix_tokens = prefix_n + 2 if head else 0
        if total <= budget:
            # One chunk: its plain encode (the whole index text, [CLS] ... [SEP]), cached by text like any passage.
            seq = ids if len(ids) <= self.max_length else np.concatenate([ids[:self.max_length - 1], ids[-1:]])
            request = PoolRequest((SpanJob(seq, ((0, len(seq)),)),), (text,), unit=True)
            return _LatePlan(sec.path, pieces, budget, prefix_tokens, request, True)
        return _LatePlan(sec.path, pieces, budget, prefix_tokens, self._windows(ids, prefix_n, pieces, text), False)

    def _split_long(self, span: _Span, a: int, b: int, budget: int, offsets: Sequence[tuple[int, int]],
                    starts: np.ndarray, base: int) -> list[_Piece]:
        """A sentence over the budget is cut into windows at word starts (a token not glued to the one before)."""
        if b - a + 2 <= budget:
            return [_Piece(span.start, span.end, span.page, a, b)]
        out, i, room = [], a, budget - 2
        while i < b:
            j = min(b, i + room)
            if j < b:
                k = j
                while k > i + 1 and offsets[k][0] == offsets[k - 1][1]:   # inside a word: back up to its start
                    k -= 1
                j = k if k > i + 1 else j
            out.append(_Piece(int(starts[i]) + base, offsets[j - 1][1] + base, span.page, i, j))
            i = j
        return out

    def _windows(self, ids: np.ndarray, prefix_n: int, pieces: list[_Piece], text: str) -> PoolRequest:
        """Encoder windows over the section (title path at the head of each), one pooled span per piece."""
        prefix = ids[1:1 + min(prefix_n, self.window // 2)]
        room = self.window - 2 - len(prefix)
        bounds: list[list[int]] = []           # per window: [first content token, end content token]
        where: list[tuple[int, int]] = []      # per piece: (window, span index in it)
        spans: list[list[tuple[int, int]]] = []
        for p in pieces:
            if not bounds or p.b - bounds[-1][0] > room:
                bounds.append([p.a, p.a])
                spans.append([])
            w = len(bounds) - 1
            off = 1 + len(prefix) - bounds[w][0]
            spans[w].append((p.a + off, p.b + off))
            where.append((w, len(spans[w]) - 1))
            bounds[w][1] = max(bounds[w][1], p.b)
        jobs = tuple(SpanJob(np.concatenate([ids[:1], prefix, ids[1 + a:1 + b], ids[-1:]]), tuple(sp))
                     for (a, b), sp in zip(bounds, spans))
        keys = tuple(f"\x00late:w{self.window}\x00{text}\x00{p.a}:{p.b}" for p in pieces)
        return PoolRequest(jobs, keys, unit=False, where=tuple(where))

    # --- cutting: breakpoints and chunk vectors from the pooled states ---------------------------
    def _chunks(self, doc_text: str, plan: _LatePlan, means: np.ndarray) -> list[Chunk]:
        if plan.single:
            return [self._make(doc_text, plan, 0, len(plan.pieces), means[0])]
        groups = self._groups(means) if len(plan.pieces) > 2 else [list(range(len(plan.pieces)))]
        ranges: list[tuple[int, int]] = []
        for group in groups:                      # greedy packing under the budget, group by group
            lo, tokens = group[0], 2
            for i in group:
                n = plan.pieces[i].n
                if i > lo and tokens + n > plan.budget:
                    ranges.append((lo, i))
                    lo, tokens = i, 2
                tokens += n
            ranges.append((lo, group[-1] + 1))
        merged: list[tuple[int, int]] = []
        for r in ranges:                          # pieces under min_tokens join the previous chunk when they fit
            if merged:
                prev = merged[-1]
                t_prev, t_cur = self._tokens(plan, prev), self._tokens(plan, r)
                if (t_cur < self.min_tokens or t_prev < self.min_tokens) \
                        and t_prev + t_cur - 2 + plan.prefix_tokens <= self.max_tokens:
                    merged[-1] = (prev[0], r[1])
                    continue
            merged.append(r)
        return [self._make(doc_text, plan, lo, hi, self._pool(plan, means, lo, hi)) for lo, hi in merged]

    def _groups(self, means: np.ndarray) -> list[list[int]]:
        """Cut where adjacent-sentence similarity falls below the section's percentile (as the semantic chunker)."""
        norms = np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        return breakpoint_groups(means / norms, self.breakpoint_percentile)

    @staticmethod
    def _tokens(plan: _LatePlan, r: tuple[int, int]) -> int:
        return sum(p.n for p in plan.pieces[r[0]:r[1]]) + 2

    @staticmethod
    def _pool(plan: _LatePlan, means: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """A chunk's mean token state: its pieces' means weighted by their token counts."""
        weights = np.array([p.n for p in plan.pieces[lo:hi]], dtype=np.float32)
        return (weights[:, None] * means[lo:hi]).sum(axis=0) / max(float(weights.sum()), 1.0)

    @staticmethod
    def _make(doc_text: str, plan: _LatePlan, lo: int, hi: int, vector: np.ndarray) -> Chunk:
        pieces = plan.pieces[lo:hi]
        start, end = pieces[0].start, pieces[-1].end
        pages = sorted({p.page for p in pieces if p.page is not None})
        return Chunk(doc_text[start:end], plan.path, start, end, pages, sum(p.n for p in pieces) + 2,
                     vector=_unit(vector))
