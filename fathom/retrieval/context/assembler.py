"""Context assembly: the guard's kept chunks in, a token-budgeted, cited, de-duplicated context out.

One component with one entry point, ``ContextAssembler.run(ContextInput) ->
ContextOutput``, meant to run as the stage after the guard. It does nothing
unless the guard said ``ok`` or ``degraded``: a ``no_relevant_context``
answer never gets a context.

Steps (each a pure function in its own module):

1. read the chunks' stored documents (tenant-scoped ``DocumentSource``) and
   keep those the chunks' offsets agree with (``passages.usable_documents``);
2. merge each document's adjacent or overlapping chunks into passages;
3. collapse near-duplicates (``dedup``), optionally reorder for diversity (MMR);
4. pack under the budget, best first: a passage that fits goes in whole; one
   that does not gives its best-matching run of sentences if at least
   ``min_fragment_tokens`` fit (``trim``), else it is left out and the next
   one is tried;
5. with leftover budget, widen passages to neighbouring sentences or their
   whole section (``expand``), best passage first;
6. order (``score`` / ``document`` / ``edges``), highlight, number the
   citations, render the context string;
7. count what goes out with the configured tokenizer and, should a BPE merge
   across a seam have pushed it over, trim the last passage until it fits.

What the budget covers: with ``include_context`` the whole context string
(markers and separators included); without it the passages' texts, each
counted on its own. Metadata and JSON are never counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from fathom.retrieval.context.dedup import collapse_duplicates, mmr
from fathom.retrieval.context.highlights import QueryTerms, best_window, highlights
from fathom.retrieval.context.order import order_passages
from fathom.retrieval.context.passages import (DocKey, grow, merge_chunks, respan, section_bounds, shrink,
                                               usable_documents)
from fathom.retrieval.context.render import SEPARATOR, citations, marker, render
from fathom.retrieval.context.tokens import PromptTokenizer
from fathom.retrieval.context.types import (ContextInput, ContextOptions, ContextOutput, DocumentSource, Passage,
                                            StoredDocument)
from fathom.retrieval.guard import Status
from fathom.retrieval.injection import scan as scan_injection

log = logging.getLogger(__name__)

_ASSEMBLED = (Status.OK, Status.DEGRADED)


class ContextAssembler:
    def __init__(self, tokenizer: PromptTokenizer, documents: DocumentSource):
        self.tokenizer = tokenizer
        self.documents = documents

    def run(self, inp: ContextInput) -> ContextOutput:
        opts = inp.options
        if inp.status not in _ASSEMBLED or not inp.chunks:
            return ContextOutput([], [], None, 0, opts.max_tokens, self.tokenizer.name, assembled=False)
        cost = _Counter(self.tokenizer)
        docs = self._documents(inp)
        passages = merge_chunks(inp.chunks, docs)
        merged = len(passages)
        if opts.dedup:
            passages = collapse_duplicates(passages, opts.dedup_threshold)
        collapsed = merged - len(passages)
        terms = QueryTerms(inp.query, passages)
        overhead = cost(marker(len(passages))) + cost(SEPARATOR) if opts.include_context else 0
        chosen, used = _pack(mmr(passages, opts.diversity), docs, opts, terms, cost, overhead)
        if opts.expand != "none":
            chosen, used = _expand(chosen, docs, opts, cost, used, overhead)
        out = order_passages(chosen, opts.order)
        out, context, used = self._fit(out, opts, terms, cost)
        for p in out:
            p.highlights = highlights(p, terms, opts.highlights)
            if p.expanded or len(p.chunks) > 1:
                # Text between or around the chunks was never scanned at retrieval: a passage is flagged for
                # anything its chunks were flagged for, and for anything its own text shows.
                p.flags = p.flags | frozenset(scan_injection(p.text).flags)
        return ContextOutput(out, citations(out), context, used, opts.max_tokens, self.tokenizer.name, assembled=True,
                             dropped=len(passages) - len(out), collapsed=collapsed)

    def _documents(self, inp: ContextInput) -> dict[DocKey, StoredDocument]:
        wanted = sorted({(c.document_id, c.doc_version) for c in inp.chunks})
        try:
            docs = self.documents.documents(inp.tenant, wanted)
        except Exception as exc:   # the chunks alone still make a context; say so in the logs, never fail the answer
            log.warning("stored documents unavailable, assembling from chunk text only: %s", type(exc).__name__)
            return {}
        return usable_documents(inp.chunks, docs)

    def _fit(self, out: list[Passage], opts: ContextOptions, terms: QueryTerms,
             cost: "_Counter") -> tuple[list[Passage], str | None, int]:
        """Exact count of what goes out; trims (then drops) the lowest-ranked passage until it is within budget."""
        while True:
            for p in out:
                p.tokens = cost(p.text)
            context = render(out) if opts.include_context else None
            used = cost(context) if context is not None else sum(p.tokens for p in out)
            if used <= opts.max_tokens or not out:
                return out, context, used
            worst = max(range(len(out)), key=lambda i: out[i].rank)
            room = out[worst].tokens - (used - opts.max_tokens) - 1
            smaller = best_window(out[worst], terms, room, cost) if room > 0 else None
            if smaller is None or smaller.text == out[worst].text:
                out.pop(worst)
            else:
                out[worst] = smaller


class _Counter:
    """The tokenizer with a per-assembly memo (a passage is counted several times while it is packed)."""

    def __init__(self, tokenizer: PromptTokenizer):
        self.tokenizer = tokenizer
        self.memo: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        n = self.memo.get(text)
        if n is None:
            n = self.memo[text] = self.tokenizer.count(text)
        return n


def _pack(passages: Sequence[Passage], docs: dict[DocKey, StoredDocument], opts: ContextOptions, terms: QueryTerms,
          cost: Callable[[str], int], overhead: int) -> tuple[list[Passage], int]:
    """Best first: whole if it fits, else its best window (``trim``) if a useful fragment fits, else skipped."""
    chosen: list[Passage] = []
    used = 0
    for p in passages:
        room = opts.max_tokens - used - overhead
        if room <= 0:
            break
        n = cost(p.text)
        if n > room:
            if not opts.trim or room < min(opts.min_fragment_tokens, max(1, opts.max_tokens // 2)):
                continue
            p = shrink(p, docs.get((p.document_id, p.doc_version)), room, cost,   # type: ignore[assignment]
                       lambda q, r: best_window(q, terms, r, cost))
            if p is None:
                continue
            n = cost(p.text)
        chosen.append(p)
        used += n + overhead
    return chosen, used


def _expand(chosen: list[Passage], docs: dict[DocKey, StoredDocument], opts: ContextOptions,
            cost: Callable[[str], int], used: int, overhead: int) -> tuple[list[Passage], int]:
    """Widen stitched passages with the leftover budget, best first; passages that come to touch are merged."""
    out = list(chosen)
    for i in sorted(range(len(out)), key=lambda i: out[i].rank):
        p = out[i]
        doc = docs.get((p.document_id, p.doc_version))
        room = opts.max_tokens - used
        if doc is None or not p.stitched or p.trimmed or room <= 0:
            continue
        assert p.char_start is not None and p.char_end is not None
        if opts.expand == "section":
            bounds = section_bounds(doc, p.char_start, p.char_end)
            whole = cost(doc.text[bounds[0]:bounds[1]]) - cost(p.text)
            if whole <= room:
                out[i], added = respan(p, doc, *bounds, expanded=bounds != (p.char_start, p.char_end)), whole
            else:
                out[i], added = grow(p, doc, bounds, room, cost)
        else:
            out[i], added = grow(p, doc, section_bounds(doc, p.char_start, p.char_end), room, cost,
                                 per_side=opts.neighbour_tokens)
        used += added
    return _coalesce(out, docs, cost, overhead, used)


def _coalesce(passages: list[Passage], docs: dict[DocKey, StoredDocument], cost: Callable[[str], int],
              overhead: int, used: int) -> tuple[list[Passage], int]:
    """Merge widened passages of one document that now overlap or touch (a text is never given twice)."""
    out: list[Passage] = []
    for p in sorted(passages, key=lambda p: (p.document_id, p.doc_version, p.char_start or 0)):
        prev = out[-1] if out else None
        if (prev is not None and prev.stitched and p.stitched and (prev.document_id, prev.doc_version)
                == (p.document_id, p.doc_version) and p.char_start <= prev.char_end):   # type: ignore[operator]
            doc = docs[(p.document_id, p.doc_version)]
            before = cost(prev.text) + cost(p.text) + 2 * overhead
            best = prev if prev.rank <= p.rank else p
            merged = respan(best, doc, prev.char_start, max(prev.char_end, p.char_end),   # type: ignore[arg-type]
                            chunks=sorted(prev.chunks + p.chunks, key=lambda c: c.char_start or 0),
                            flags=prev.flags | p.flags, duplicates=prev.duplicates + p.duplicates,
                            expanded=True, trimmed=prev.trimmed or p.trimmed)
            out[-1] = merged
            used += cost(merged.text) + overhead - before
            continue
        out.append(p)
    return out, used

