"""Context assembly: the guard's kept chunks in, a token-budgeted, cited, de-duplicated context out.

One component with one entry point, ``ContextAssembler.run(ContextInput) ->
ContextOutput``, meant to run as the stage after the guard. It does nothing
unless the guard said ``ok`` or ``degraded``: a ``no_relevant_context``
answer never gets a context.

Steps (each a pure function in its own module):

1. read the chunks' stored documents (tenant-scoped ``DocumentSource``) and
   keep those the chunks' offsets agree with (``passages.usable_documents``);
2. pack chunks under the budget in ranked order (optionally MMR-reordered):
   a chunk that repeats one already reached is listed as its duplicate
   (``dedup``); a chunk adjacent to (consecutive ``chunk_index``) or
   overlapping a passage already packed from its document extends that
   passage, text between them cut from the stored document; any other chunk
   starts a passage. A chunk that does not fit gives its best-matching run of
   sentences if at least ``min_fragment_tokens`` fit (``trim``), else it is
   skipped and the next one is tried. Packing chunk by chunk spends the
   budget in the retriever's order: merging never pulls a low-ranked chunk
   ahead of better ones;
3. with leftover budget, widen passages to neighbouring sentences or their
   whole section (``expand``), best passage first;
4. collapse near-identical passages once more, whole (a copy the chunker cut
   elsewhere escapes the chunk-level check), then order (``score`` /
   ``document`` / ``edges``), highlight, number the
   citations, render the context string;
5. count what goes out with the configured tokenizer and, should a BPE merge
   across a seam have pushed it over, trim the last passage until it fits.

What the budget covers: with ``include_context`` the whole context string
(markers and separators included); without it the passages' texts, each
counted on its own. Metadata and JSON are never counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from fathom.retrieval.context.dedup import Deduplicator, Signatures, collapse, mmr
from fathom.retrieval.context.document_cache import DocumentCache
from fathom.retrieval.context.facts import ChunkFacts
from fathom.retrieval.context.highlights import best_window, highlights
from fathom.retrieval.context.lru import SizedLRU
from fathom.retrieval.context.order import order_passages
from fathom.retrieval.context.passages import (DocKey, grow, overlapping, respan, section_bounds, single,
                                               usable_documents)
from fathom.retrieval.context.render import SEPARATOR, citations, marker, render
from fathom.retrieval.context.terms import QueryTerms
from fathom.retrieval.context.tokens import MAX_CHARS_PER_TOKEN, PromptTokenizer
from fathom.retrieval.context.types import (ContextChunk, ContextInput, ContextOptions, ContextOutput, DocumentSource,
                                            Duplicate, Passage, StoredDocument)
from fathom.retrieval.guard import Status
from fathom.retrieval.injection import scan as scan_injection

log = logging.getLogger(__name__)

_ASSEMBLED = (Status.OK, Status.DEGRADED)


class ContextAssembler:
    def __init__(self, tokenizer: PromptTokenizer, documents: DocumentSource, cache: DocumentCache | None = None,
                 count_cache_chars: int = 0):
        self.tokenizer = tokenizer
        self.documents = documents
        self.cache = cache
        self.counts = CountCache(count_cache_chars) if count_cache_chars > 0 else None

    def run(self, inp: ContextInput) -> ContextOutput:
        opts = inp.options
        if inp.status not in _ASSEMBLED or not inp.chunks:
            return ContextOutput([], [], None, 0, opts.max_tokens, self.tokenizer.name, assembled=False)
        cost = _Counter(self.tokenizer, self.counts)
        docs = self._documents(inp)
        terms = QueryTerms(inp.query, [c.text for c in inp.chunks])
        signatures = Signatures()
        for c in inp.chunks:                     # what ingest stored for each chunk (facts.py, sketch.py)
            if c.facts is not None and c.facts.applies(c.text, self.tokenizer):
                cost.learn(c.text, c.facts)
                terms.know(c.text, [(s, e) for s, e, _ in c.facts.sentences])
            if c.sketch is not None:
                signatures.know(c.text, c.sketch)
        packer = _Packer(docs, opts, terms, cost, signatures)
        for c in mmr(list(inp.chunks), opts.diversity):
            if not packer.add(c):
                break
        chosen, used = _coalesce(packer.passages, docs, cost, packer.overhead, packer.used)
        overhead = packer.overhead
        if opts.expand != "none":
            chosen, used = _expand(chosen, docs, opts, cost, used, overhead)
        collapsed = packer.collapsed
        if opts.dedup:
            chosen, late = collapse(chosen, opts.dedup_threshold, signatures,
                                    packer.dedup.compared if packer.dedup is not None else ())
            collapsed += late
        out = order_passages(chosen, opts.order)
        out, context, used = self._fit(out, opts, terms, cost)
        for p in out:
            p.highlights = highlights(p, terms, opts.highlights)
            if p.expanded or len(p.chunks) > 1:
                # Text between or around the chunks was never scanned at retrieval: a passage is flagged for
                # anything its chunks were flagged for, and for anything its own text shows.
                p.flags = p.flags | frozenset(scan_injection(p.text).flags)
        return ContextOutput(out, citations(out), context, used, opts.max_tokens, self.tokenizer.name, assembled=True,
                             dropped=len(inp.chunks) - sum(len(p.chunks) for p in out) - packer.collapsed,
                             collapsed=collapsed)

    def _documents(self, inp: ContextInput) -> dict[DocKey, StoredDocument]:
        hashes = {(c.document_id, c.doc_version): c.content_hash for c in inp.chunks}
        docs: dict[DocKey, StoredDocument] = {}
        if self.cache is not None:
            for (doc_id, version), digest in hashes.items():
                hit = self.cache.get(inp.tenant.id, doc_id, version, digest)
                if hit is not None:
                    docs[(doc_id, version)] = hit
        wanted = sorted(k for k in hashes if k not in docs)
        if wanted:
            try:
                fetched = self.documents.documents(inp.tenant, wanted)
            except Exception as exc:   # the chunks alone still make a context; say so in the logs, never fail
                log.warning("stored documents unavailable, assembling from chunk text only: %s", type(exc).__name__)
                fetched = {}
            for key, doc in fetched.items():
                # Only a document whose hash is the chunks' is the text they were cut from: cache only that.
                if self.cache is not None and doc.content_hash is not None and doc.content_hash == hashes.get(key):
                    self.cache.put(inp.tenant.id, doc)
            docs.update(fetched)
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
    """The tokenizer with a per-assembly memo (a passage is counted several times while it is packed), in front of
    the assembler's shared count cache (the same chunks, and so the same sentences, come back across answers)."""

    def __init__(self, tokenizer: PromptTokenizer, shared: "CountCache | None" = None):
        self.tokenizer = tokenizer
        self.shared = shared
        self.memo: dict[str, int] = {}
        self.splits_at_spaces = tokenizer.splits_at_spaces

    def learn(self, text: str, facts: ChunkFacts) -> None:
        """Counts made at ingest by this tokenizer (``ChunkFacts.applies`` checked): the chunk's, its sentences' and
        their leads (each sentence with the space before it)."""
        self.memo[text] = facts.tokens
        for s, e, n in facts.sentences:
            self.memo[text[s:e]] = n
        for (_, prev, _), (_, e, _), n in zip(facts.sentences, facts.sentences[1:], facts.leads):
            self.memo[text[prev:e]] = n

    def record(self, text: str, tokens: int) -> None:
        """A count made by adding up exact pieces (``TokenCost``): later counts of ``text`` need not tokenize it."""
        self.memo[text] = tokens

    def __call__(self, text: str) -> int:
        n = self.memo.get(text)
        if n is None:
            n = self.memo[text] = (self.shared.count(text, self.tokenizer) if self.shared is not None
                                   else self.tokenizer.count(text))
        return n


class CountCache:
    """A bounded, process-wide cache of token counts (one tokenizer per assembler), keyed by the exact text.

    Counting is the largest single cost of packing (cl100k_base's BPE, or the
    estimate's per-piece loop), and most of what is counted - a chunk's text,
    the sentences of the chunks that are cut to fit - is served again and
    again. Keyed by the exact text, so a hit is always right; bounded by the
    characters of the texts it holds.
    """

    def __init__(self, max_chars: int):
        self._lru: SizedLRU[str, int] = SizedLRU(max_chars)

    def count(self, text: str, tokenizer: PromptTokenizer) -> int:
        n = self._lru.get(text)
        if n is None:
            n = tokenizer.count(text)
            self._lru.put(text, n, len(text))
        return n

    @property
    def _chars(self) -> int:
        return self._lru.size

    @property
    def _counts(self) -> dict[str, int]:
        return {text: n for text, (n, _) in self._lru.items.items()}


class _Packer:
    """Step 2: chunks in, one at a time, into passages under the budget (see the module docstring)."""

    def __init__(self, docs: dict[DocKey, StoredDocument], opts: ContextOptions, terms: QueryTerms,
                 cost: Callable[[str], int], signatures: Signatures):
        self.docs, self.opts, self.terms, self.cost = docs, opts, terms, cost
        self.passages: list[Passage] = []
        self.used = 0
        # With the context string, each passage also costs its marker and separator (the largest marker counted).
        self.overhead = cost(marker(99)) + cost(SEPARATOR) if opts.include_context else 0
        self.dedup = Deduplicator(opts.dedup_threshold, signatures) if opts.dedup else None
        self.min_fragment = min(opts.min_fragment_tokens, max(1, opts.max_tokens // 2))
        self.collapsed = 0

    def add(self, c: ContextChunk) -> bool:
        """Pack ``c`` if it fits (whole, as an extension, or trimmed); False once the budget is spent."""
        room = self.opts.max_tokens - self.used
        if room <= 0:
            return False
        doc = self.docs.get((c.document_id, c.doc_version))
        target = self._extends(c) if doc is not None else None
        if target is not None:
            self._extend(target, c, doc, room)   # type: ignore[arg-type]
            return True
        if room - self.overhead < self.min_fragment and len(c.text) > MAX_CHARS_PER_TOKEN * (room - self.overhead):
            return True                          # cannot fit whole, too little room for a fragment: not even counted
        if self.dedup is not None:
            owner = self.dedup.find(c.text, c.document_id)
            if owner is not None:
                p = self.passages[owner]
                p.duplicates.append(Duplicate(c.document_id, c.doc_version, c.source, c.char_start, c.char_end,
                                              (c.id,), c.score))
                p.flags = p.flags | c.flags    # what the collapsed copy was flagged for applies to the kept text
                self.collapsed += 1
                return True
        p = single(c, stitched=doc is not None)
        n = self.cost(p.text)
        cap = self.opts.max_passage_tokens
        if cap is not None and n > cap and room - self.overhead >= cap:
            room = cap + self.overhead
        if n + self.overhead > room:
            if not self.opts.trim or room - self.overhead < self.min_fragment:
                return True
            p = best_window(p, self.terms, room - self.overhead, self.cost)   # type: ignore[assignment]
            if p is None:
                return True
            n = self.cost(p.text)
        self.passages.append(p)
        self.used += n + self.overhead
        if self.dedup is not None:
            self.dedup.register(c.text, c.document_id, len(self.passages) - 1, found=True)   # find() ran above
        return True

    def _extends(self, c: ContextChunk) -> int | None:
        """The packed passage of ``c``'s document that ``c`` is adjacent to or overlaps, if any."""
        for i, p in enumerate(self.passages):
            if (p.document_id, p.doc_version) != (c.document_id, c.doc_version) or not p.stitched:
                continue
            indices = [x.chunk_index for x in p.chunks if x.chunk_index is not None]
            adjacent = c.chunk_index is not None and indices and c.chunk_index in (max(indices) + 1, min(indices) - 1)
            if adjacent or (c.char_start <= p.char_end and c.char_end >= p.char_start):   # type: ignore[operator]
                return i
        return None

    def _extend(self, i: int, c: ContextChunk, doc: StoredDocument, room: int) -> None:
        p = self.passages[i]
        assert None not in (p.char_start, p.char_end, c.char_start, c.char_end)
        start, end = min(p.char_start, c.char_start), max(p.char_end, c.char_end)
        if self.opts.max_passage_tokens is not None:
            room = min(room, max(0, self.opts.max_passage_tokens - self.cost(p.text)))
        if (start, end) == (p.char_start, p.char_end):
            added = 0                            # inside the passage already: it only joins its chunks
        elif (p.char_start - start) + (end - p.char_end) > MAX_CHARS_PER_TOKEN * room:
            added = room + 1                     # cannot fit whole (no room at all, most often: a capped passage
                                                 # extended by its next chunk; see MAX_CHARS_PER_TOKEN): uncounted
        else:
            added = self.cost(doc.text[start:p.char_start]) + self.cost(doc.text[p.char_end:end])
        if added <= room:
            self.passages[i] = respan(p, doc, start, end, chunks=overlapping([*p.chunks, c], start, end),
                                      rank=min(p.rank, c.rank))
            self.used += added
        elif self.opts.trim and room > 0:        # as far towards the chunk as the budget allows
            grown, added = grow(p, doc, (start, end), room, self.cost, words=True)
            if added:
                s, e = grown.char_start, grown.char_end
                self.passages[i] = respan(grown, doc, s, e, chunks=overlapping([*p.chunks, c], s, e),  # type: ignore[arg-type]
                                          expanded=False, trimmed=True)
                self.used += added
        if self.dedup is not None:
            self.dedup.register(c.text, c.document_id, i)


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
        same = prev is not None and prev.stitched and p.stitched and \
            (prev.document_id, prev.doc_version) == (p.document_id, p.doc_version)
        if same and (p.char_start <= prev.char_end or _consecutive(prev, p)):  # type: ignore[operator, union-attr]
            doc = docs[(p.document_id, p.doc_version)]
            before = cost(prev.text) + cost(p.text) + 2 * overhead
            best = prev if prev.rank <= p.rank else p
            merged = respan(best, doc, prev.char_start, max(prev.char_end, p.char_end),   # type: ignore[arg-type]
                            chunks=sorted(prev.chunks + p.chunks, key=lambda c: c.char_start or 0),
                            flags=prev.flags | p.flags, duplicates=prev.duplicates + p.duplicates,
                            expanded=prev.expanded or p.expanded, trimmed=prev.trimmed or p.trimmed,
                            rank=min(prev.rank, p.rank))
            out[-1] = merged
            used += cost(merged.text) + overhead - before
            continue
        out.append(p)
    return out, used



def _consecutive(a: Passage, b: Passage) -> bool:
    """``b`` starts with the chunk right after ``a``'s last one (only the text between them is missing)."""
    ia = [c.chunk_index for c in a.chunks if c.chunk_index is not None]
    ib = [c.chunk_index for c in b.chunks if c.chunk_index is not None]
    return bool(ia and ib) and min(ib) == max(ia) + 1 and not a.trimmed and not b.trimmed

