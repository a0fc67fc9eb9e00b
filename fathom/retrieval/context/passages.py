"""From ranked chunks to passages: merge a document's adjacent or overlapping chunks, widen or trim them.

Every passage built from a stored document is a span ``[char_start, char_end)``
of that document's text and its text is exactly those characters: merging,
widening and trimming only move the two ends. Text between two merged chunks
(a sentence the chunker put elsewhere, a heading) is therefore the document's
own, never invented.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from fathom.retrieval.context.types import ContextChunk, Passage, StoredDocument
from fathom.retrieval.sentences import split_sentences

DocKey = tuple[str, int]


def usable_documents(chunks: Sequence[ContextChunk], docs: Mapping[DocKey, StoredDocument]) -> dict[DocKey, StoredDocument]:
    """The stored documents every chunk of which sits at its recorded offsets (else the store and the index disagree)."""
    bad: set[DocKey] = set()
    for c in chunks:
        key = (c.document_id, c.doc_version)
        doc = docs.get(key)
        if doc is None:
            continue
        if c.char_start is None or c.char_end is None or doc.text[c.char_start:c.char_end] != c.text:
            bad.add(key)
    return {k: d for k, d in docs.items() if k not in bad}


def merge_chunks(chunks: Sequence[ContextChunk], docs: Mapping[DocKey, StoredDocument]) -> list[Passage]:
    """One passage per run of adjacent (consecutive ``chunk_index``) or overlapping chunks of a document.

    ``docs`` must come from :func:`usable_documents`. Chunks of a document that
    is not there stay one passage each, with their own text. Passages come out
    in rank order of their best chunk.
    """
    by_doc: dict[DocKey, list[ContextChunk]] = {}
    for c in chunks:
        by_doc.setdefault((c.document_id, c.doc_version), []).append(c)
    out: list[Passage] = []
    for key, group in by_doc.items():
        doc = docs.get(key)
        if doc is None:
            out.extend(_single(c) for c in group)
            continue
        group = sorted(group, key=lambda c: (c.char_start, c.char_end))
        run = [group[0]]
        for c in group[1:]:
            prev = run[-1]
            adjacent = prev.chunk_index is not None and c.chunk_index == prev.chunk_index + 1
            if adjacent or c.char_start <= max(x.char_end for x in run):   # type: ignore[operator]
                run.append(c)
            else:
                out.append(_span(doc, run))
                run = [c]
        out.append(_span(doc, run))
    out.sort(key=lambda p: p.rank)
    return out


def _single(c: ContextChunk) -> Passage:
    return Passage(c.document_id, c.doc_version, c.text, c.char_start, c.char_end, [c], c.score, c.confidence, c.rank,
                   c.section_path, c.pages, c.source, c.flags)


def _span(doc: StoredDocument, run: list[ContextChunk]) -> Passage:
    start = min(c.char_start for c in run)                 # type: ignore[type-var]
    end = max(c.char_end for c in run)                     # type: ignore[type-var]
    best = min(run, key=lambda c: c.rank)
    pages = tuple(sorted({p for c in run for p in c.pages}))
    flags = frozenset().union(*(c.flags for c in run))
    return Passage(doc.document_id, doc.doc_version, doc.text[start:end], start, end, list(run), best.score,
                   best.confidence, best.rank, best.section_path, pages, best.source, flags, stitched=True)


def respan(p: Passage, doc: StoredDocument, start: int, end: int, **changes: object) -> Passage:
    """The passage moved to ``[start, end)`` of its stored document, text re-cut from it, pages re-read."""
    pages = {b.page for b in doc.blocks if b.page is not None and b.start < end and b.end > start}
    changes.setdefault("chunks", overlapping(p.chunks, start, end))
    return replace(p, text=doc.text[start:end], char_start=start, char_end=end, pages=tuple(sorted(pages)) or p.pages,
                   **changes)   # type: ignore[arg-type]


def overlapping(chunks: Sequence[ContextChunk], start: int, end: int) -> list[ContextChunk]:
    """The chunks with text inside ``[start, end)`` (a trimmed passage no longer claims the ones it cut off)."""
    return [c for c in chunks if c.char_start is None or c.char_end is None or (c.char_start < end and c.char_end > start)]


def shrink(p: Passage, doc: StoredDocument | None, room: int, cost: Callable[[str], int],
           window: Callable[[Passage, int], Passage | None]) -> Passage | None:
    """``p`` cut down to ``room`` tokens around what ranked best: its best chunk, widened inside ``p`` by sentences.

    A merged passage keeps the retriever's judgement (its best chunk) rather
    than whatever words overlap the query; ``window`` (the best-matching
    sentences) is the fallback when even that chunk is too long, or when
    there is no stored document to widen in.
    """
    if doc is not None and p.stitched and len(p.chunks) > 1 and p.char_start is not None and p.char_end is not None:
        best = min(p.chunks, key=lambda c: c.rank)
        core = respan(p, doc, best.char_start, best.char_end, chunks=[best])   # type: ignore[arg-type]
        n = cost(core.text)
        if n <= room:
            grown, _ = grow(core, doc, (p.char_start, p.char_end), room - n, cost)
            return replace(grown, chunks=overlapping(p.chunks, grown.char_start, grown.char_end),  # type: ignore[arg-type]
                           expanded=False, trimmed=True)
        p = core
    return window(p, room)


def section_bounds(doc: StoredDocument, start: int, end: int) -> tuple[int, int]:
    """The span of the section around ``[start, end)``: the run of body blocks sharing the section path at ``start``."""
    blocks = [b for b in doc.blocks if not b.heading]
    if not blocks:
        return 0, len(doc.text)
    idx = next((i for i, b in enumerate(blocks) if b.end > start), len(blocks) - 1)
    path = blocks[idx].section_path
    lo = idx
    while lo > 0 and blocks[lo - 1].section_path == path:
        lo -= 1
    hi = idx
    while hi + 1 < len(blocks) and (blocks[hi + 1].section_path == path or blocks[hi + 1].start < end):
        hi += 1
    return min(blocks[lo].start, start), max(blocks[hi].end, end)


def sentence_spans(text: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """Sentences of ``text[lo:hi]`` as absolute offsets (blocks are split first: a sentence never spans two)."""
    out: list[tuple[int, int]] = []
    pos = lo
    for part in text[lo:hi].split("\n\n"):
        out.extend((pos + s, pos + e) for s, e in split_sentences(part))
        pos += len(part) + 2
    return out


def grow(p: Passage, doc: StoredDocument, bounds: tuple[int, int], room: int, cost: Callable[[str], int],
         per_side: int | None = None) -> tuple[Passage, int]:
    """Widen ``p`` by whole sentences inside ``bounds`` (next, then previous, alternately) while ``room`` allows.

    ``per_side`` caps the tokens added on each side (``neighbours``). Each
    step costs the tokens of the text it adds (the assembler recounts the
    whole context at the end, so a BPE merge across the seam cannot push it
    over the budget). Returns the passage (``p`` itself when nothing fitted)
    and the tokens added.
    """
    assert p.char_start is not None and p.char_end is not None
    sents = sentence_spans(doc.text, *bounds)
    # A sentence the passage ends (starts) inside counts as the next (previous) one: growing completes it.
    sides = {"after": [s for s in sents if s[1] > p.char_end],
             "before": [s for s in sents if s[0] < p.char_start][::-1]}
    used = {"after": 0, "before": 0}
    start, end = p.char_start, p.char_end
    while sides["after"] or sides["before"]:
        for side in ("after", "before"):
            if not sides[side]:
                continue
            s, e = sides[side][0]
            piece = doc.text[end:e] if side == "after" else doc.text[s:start]
            added = cost(piece)
            if added > room - used["after"] - used["before"] or (per_side is not None and used[side] + added > per_side):
                sides[side] = []
                continue
            sides[side].pop(0)
            used[side] += added
            start, end = (start, e) if side == "after" else (s, end)
    if (start, end) == (p.char_start, p.char_end):
        return p, 0
    return respan(p, doc, start, end, expanded=True), used["after"] + used["before"]
