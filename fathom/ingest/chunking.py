"""Chunking: structure first, then semantic breakpoints, always inside a token budget.

Why this order:

1. **Structure.** A heading starts a new section; a chunk never spans two
   sections, and every chunk carries its section's title path so it can be
   understood on its own (the path is prepended to what gets embedded).
2. **Semantics.** A section longer than the budget is cut where the topic
   moves: adjacent sentences are embedded and the cut points are the
   positions where their cosine similarity drops the most (below the
   configured percentile of the section's similarities).
3. **Budget.** The budget is counted with the embedding model's own
   tokenizer, including the title path, so no chunk is silently truncated by
   the model. Pieces still too long are packed greedily by sentence (and, for
   a single overlong sentence, by words); pieces under the minimum are merged
   with a neighbour in the same section.

``FixedSizeChunker`` (token windows with overlap, ignoring structure and
meaning) exists as the baseline the benchmark compares against.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from fathom.ingest.document import ParsedDocument
from fathom.retrieval.sentences import split_sentences

PATH_SEP = " > "


class TokenCounter(Protocol):
    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...


class SectionEncoder(Protocol):
    """What a late chunker needs: one tokenizer pass with offsets and pooled token states (cached)."""

    def tokenize(self, texts: Sequence[str]) -> list[Any]: ...

    def pool(self, requests: Sequence[Any]) -> list[np.ndarray]: ...   # PoolRequest -> pooled states per span


# How a late chunk's vector is pooled from its section's states; part of the spec key (see late_chunking.py).
LATE_POOLING = "chunk-tokens"


SentenceEmbedder = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True, slots=True)
class ChunkerSpec:
    """A chunker as data: what an index version records in its layout and what a reindex may ask for.

    Writes into a version chunk the way its spec says, so every document of a
    version is cut alike even when a reindex built it with another chunker
    than the service's default. ``min_tokens`` and ``breakpoint_percentile``
    apply to ``semantic`` and ``late``, ``overlap`` to ``fixed`` only, ``window`` to
    ``late`` only. ``late`` cuts like ``semantic`` but takes its breakpoint
    sentences and its chunk vectors from one encoder pass per section, so its
    key differs: an index never mixes vectors made the two ways.
    """

    kind: Literal["semantic", "fixed", "late"] = "semantic"
    max_tokens: int = 256
    min_tokens: int = 48
    breakpoint_percentile: float = 90.0
    overlap: int = 32
    window: int = 512          # late only: tokens per encoder pass over a section (the model's positions)

    @property
    def key(self) -> str:
        """Identity of the chunking (only the fields that apply to ``kind``); part of each document's content hash."""
        if self.kind == "fixed":
            return f"fixed:{self.max_tokens}:overlap={self.overlap}"
        if self.kind == "late":
            return (f"late:{self.max_tokens}:{self.min_tokens}:p{self.breakpoint_percentile:g}:w{self.window}"
                    f":pool={LATE_POOLING}")
        return f"semantic:{self.max_tokens}:{self.min_tokens}:p{self.breakpoint_percentile:g}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "max_tokens": self.max_tokens, "min_tokens": self.min_tokens,
                "breakpoint_percentile": self.breakpoint_percentile, "overlap": self.overlap, "window": self.window}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ChunkerSpec":
        return cls(**{k: data[k] for k in ("kind", "max_tokens", "min_tokens", "breakpoint_percentile", "overlap",
                                           "window") if k in data})


@dataclass(slots=True)
class Chunk:
    text: str                              # the chunk body, verbatim from the normalised document
    section_path: tuple[str, ...]
    char_start: int                        # offsets into ParsedDocument.text
    char_end: int
    pages: list[int] = field(default_factory=list)
    token_count: int = 0
    vector: np.ndarray | None = None       # set by a chunker that computes the dense vector itself (late)

    @property
    def index_text(self) -> str:
        """What gets embedded and BM25-indexed: the title path gives a chunk its context."""
        if not self.section_path:
            return self.text
        return f"{PATH_SEP.join(self.section_path)}\n{self.text}"


@dataclass(slots=True)
class _Span:
    """A sentence (or element) with its place in the document."""

    text: str
    start: int
    end: int
    page: int | None


@dataclass(slots=True)
class _Section:
    path: tuple[str, ...]
    spans: list[_Span]


def _sections(doc: ParsedDocument, sentences: bool) -> list[_Section]:
    """Group body elements under their heading path, tracking offsets into ``doc.text``."""
    sections: list[_Section] = []
    offset = 0
    for i, el in enumerate(doc.elements):
        if i:
            offset += 2  # the "\n\n" that ParsedDocument.text puts between elements
        start = offset
        offset += len(el.text)
        if el.is_heading:
            continue
        path = el.section_path
        if not sections or sections[-1].path != path:
            sections.append(_Section(path, []))
        pieces = split_sentences(el.text) if sentences else [(0, len(el.text))]
        for s, e in pieces:
            sections[-1].spans.append(_Span(el.text[s:e], start + s, start + e, el.page_number))
    # A document made only of headings still has text worth indexing.
    if not sections and doc.elements:
        offset = 0
        for i, el in enumerate(doc.elements):
            offset += 2 if i else 0
            path = el.section_path[:-1] if el.section_path[-1:] == (el.text,) else el.section_path
            sections.append(_Section(path, [_Span(el.text, offset, offset + len(el.text), el.page_number)]))
            offset += len(el.text)
    return sections


def _make_chunk(doc_text: str, path: tuple[str, ...], spans: list[_Span], tokens: int) -> Chunk:
    start, end = spans[0].start, spans[-1].end
    pages = sorted({s.page for s in spans if s.page is not None})
    return Chunk(doc_text[start:end], path, start, end, pages, tokens)


@dataclass
class SemanticChunker:
    counter: TokenCounter
    embed: SentenceEmbedder | None = None     # None: structure + budget only (no semantic cuts)
    max_tokens: int = 256
    min_tokens: int = 48
    breakpoint_percentile: float = 90.0
    name: str = "semantic"

    @property
    def spec(self) -> ChunkerSpec:
        return ChunkerSpec("semantic", self.max_tokens, self.min_tokens, self.breakpoint_percentile)

    def chunk(self, doc: ParsedDocument) -> list[Chunk]:
        return self.chunk_batch([doc])[0]

    def chunk_batch(self, docs: Sequence[ParsedDocument]) -> list[list[Chunk]]:
        """Chunk several documents, embedding all their breakpoint sentences in one call.

        One big call lets the embedder sort every sentence of the batch by length
        and fill full batches; per-section calls were ~5x slower.
        """
        plans = [self._plan(doc) for doc in docs]
        pending = [(p, s) for plan in plans for p in plan if (s := p.needs_embedding(self))]
        texts = [t for _, sents in pending for t in sents]
        vecs = self.embed(texts) if (texts and self.embed) else np.zeros((0, 1), dtype=np.float32)
        offset = 0
        for part, sents in pending:
            part.vectors = vecs[offset:offset + len(sents)]
            offset += len(sents)
        out = []
        for doc, plan in zip(docs, plans):
            chunks = [c for part in plan for c in part.chunks(self, doc.text)]
            out.append(_merge_small(doc.text, chunks, self.counter, self.min_tokens, self.max_tokens))
        return out

    def _budget(self, path: tuple[str, ...]) -> int:
        prefix = self.counter.count_tokens([PATH_SEP.join(path)])[0] if path else 0
        return max(16, self.max_tokens - prefix)

    def _plan(self, doc: ParsedDocument) -> list["_SectionPlan"]:
        plans = []
        for sec in _sections(doc, sentences=True):
            budget = self._budget(sec.path)
            spans = _split_long_spans(sec.spans, self.counter, budget)
            counts = self.counter.count_tokens([s.text for s in spans])
            plans.append(_SectionPlan(sec.path, spans, counts, budget))
        return plans

    def groups(self, vectors: np.ndarray) -> list[list[int]]:
        """Cut where adjacent-sentence similarity falls below the section's percentile."""
        return breakpoint_groups(vectors, self.breakpoint_percentile)


def breakpoint_groups(vectors: np.ndarray, breakpoint_percentile: float) -> list[list[int]]:
    """Runs of consecutive sentence indices, cut where the cosine of adjacent (unit) sentence vectors falls below
    the ``100 - breakpoint_percentile`` percentile of the section's (the semantic and late chunkers both cut so)."""
    sims = np.einsum("ij,ij->i", vectors[:-1], vectors[1:])
    cut = np.percentile(sims, 100.0 - breakpoint_percentile)
    groups, current = [], [0]
    for i, sim in enumerate(sims, start=1):
        if sim < cut:
            groups.append(current)
            current = []
        current.append(i)
    groups.append(current)
    return groups


@dataclass
class _SectionPlan:
    """One section's sentences, token counts and (once embedded) sentence vectors."""

    path: tuple[str, ...]
    spans: list[_Span]
    counts: list[int]
    budget: int
    vectors: np.ndarray | None = None

    @property
    def tokens(self) -> int:
        # [CLS]/[SEP] are counted once per chunk, not once per sentence.
        return sum(c - 2 for c in self.counts) + 2

    def needs_embedding(self, chunker: SemanticChunker) -> list[str]:
        if self.tokens <= self.budget or chunker.embed is None or len(self.spans) <= 2:
            return []
        return [s.text for s in self.spans]

    def chunks(self, chunker: SemanticChunker, doc_text: str) -> list[Chunk]:
        if self.tokens <= self.budget:
            return [_make_chunk(doc_text, self.path, self.spans, self.tokens)]
        groups = chunker.groups(self.vectors) if self.vectors is not None else [list(range(len(self.spans)))]
        out: list[Chunk] = []
        for group in groups:
            out.extend(_pack(doc_text, self.path, [self.spans[i] for i in group], [self.counts[i] for i in group],
                             self.budget))
        return out


@dataclass
class FixedSizeChunker:
    """Baseline: windows of ``max_tokens`` with ``overlap`` tokens, by words, ignoring structure."""

    counter: TokenCounter
    max_tokens: int = 256
    overlap: int = 32
    name: str = "fixed"

    @property
    def spec(self) -> ChunkerSpec:
        return ChunkerSpec("fixed", self.max_tokens, overlap=self.overlap)

    def chunk_batch(self, docs: Sequence[ParsedDocument]) -> list[list[Chunk]]:
        return [self.chunk(d) for d in docs]

    def chunk(self, doc: ParsedDocument) -> list[Chunk]:
        text = doc.text
        words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        if not words:
            return []
        # Word pieces per word, measured once; windows are then cut on word boundaries.
        pieces = [max(1, c - 2) for c in self.counter.count_tokens([text[s:e] for s, e in words])]
        chunks, i = [], 0
        while i < len(words):
            j, total = i, 2
            while j < len(words) and total + pieces[j] <= self.max_tokens:
                total += pieces[j]
                j += 1
            j = max(j, i + 1)
            start, end = words[i][0], words[j - 1][1]
            chunks.append(Chunk(text[start:end], (), start, end, [], total))
            if j >= len(words):
                break
            back, k = 0, j
            while k > i + 1 and back + pieces[k - 1] <= self.overlap:
                back += pieces[k - 1]
                k -= 1
            i = k
        return chunks


def _pack(doc_text: str, path: tuple[str, ...], spans: list[_Span], counts: list[int], budget: int) -> list[Chunk]:
    """Greedy sentence packing under the budget."""
    out, cur, cur_tokens = [], [], 2
    for span, n in zip(spans, counts):
        n -= 2
        if cur and cur_tokens + n > budget:
            out.append(_make_chunk(doc_text, path, cur, cur_tokens))
            cur, cur_tokens = [], 2
        cur.append(span)
        cur_tokens += n
    if cur:
        out.append(_make_chunk(doc_text, path, cur, cur_tokens))
    return out


def _split_long_spans(spans: list[_Span], counter: TokenCounter, budget: int) -> list[_Span]:
    """A single sentence over the budget (tables, run-on text) is cut into word windows."""
    counts = counter.count_tokens([s.text for s in spans])
    out: list[_Span] = []
    for span, n in zip(spans, counts):
        if n <= budget:
            out.append(span)
            continue
        words = [(m.start(), m.end()) for m in re.finditer(r"\S+", span.text)]
        pieces = [max(1, c - 2) for c in counter.count_tokens([span.text[s:e] for s, e in words])]
        i = 0
        while i < len(words):
            j, total = i, 2
            while j < len(words) and total + pieces[j] <= budget:
                total += pieces[j]
                j += 1
            j = max(j, i + 1)
            s, e = words[i][0], words[j - 1][1]
            out.append(_Span(span.text[s:e], span.start + s, span.start + e, span.page))
            i = j
    return out


def _merge_small(doc_text: str, chunks: list[Chunk], counter: TokenCounter, min_tokens: int, max_tokens: int) -> list[Chunk]:
    """Merge chunks under ``min_tokens`` into the previous chunk of the same section when it fits."""
    out: list[Chunk] = []
    for ch in chunks:
        prev = out[-1] if out else None
        if prev and prev.section_path == ch.section_path and (ch.token_count < min_tokens or prev.token_count < min_tokens):
            merged_tokens = prev.token_count + ch.token_count - 2
            prefix = counter.count_tokens([PATH_SEP.join(ch.section_path)])[0] if ch.section_path else 0
            if merged_tokens + prefix <= max_tokens:
                out[-1] = Chunk(doc_text[prev.char_start:ch.char_end], ch.section_path, prev.char_start, ch.char_end,
                                sorted(set(prev.pages) | set(ch.pages)), merged_tokens)
                continue
        out.append(ch)
    return out
