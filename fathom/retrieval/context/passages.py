"""Passages: spans of stored documents built from chunks, widened by sentences or to their section.

Every passage built from a stored document is a span ``[char_start, char_end)``
of that document's text and its text is exactly those characters: merging,
widening and trimming only move the two ends. Text between two merged chunks
(a sentence the chunker put elsewhere, a heading) is therefore the document's
own, never invented.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace

from fathom.retrieval.context.tokens import MAX_CHARS_PER_TOKEN
from fathom.retrieval.context.types import ContextChunk, Passage, StoredDocument
from fathom.retrieval.sentences import sentence_spans

DocKey = tuple[str, int]


def usable_documents(chunks: Sequence[ContextChunk],
                     docs: Mapping[DocKey, StoredDocument]) -> dict[DocKey, StoredDocument]:
    """The stored documents every chunk of which sits at its recorded offsets (else store and index disagree)."""
    bad: set[DocKey] = set()
    for c in chunks:
        key = (c.document_id, c.doc_version)
        doc = docs.get(key)
        if doc is None:
            continue
        if c.char_start is None or c.char_end is None or doc.text[c.char_start:c.char_end] != c.text:
            bad.add(key)
    return {k: d for k, d in docs.items() if k not in bad}


def single(c: ContextChunk, stitched: bool) -> Passage:
    """A passage of one chunk (``stitched``: its document is stored, so it may be widened or merged)."""
    return Passage(c.document_id, c.doc_version, c.text, c.char_start, c.char_end, [c], c.score, c.confidence, c.rank,
                   c.section_path, c.pages, c.source, c.flags, stitched=stitched)


def respan(p: Passage, doc: StoredDocument, start: int, end: int, **changes: object) -> Passage:
    """The passage moved to ``[start, end)`` of its stored document, text re-cut from it, pages re-read."""
    pages = {b.page for b in doc.blocks if b.page is not None and b.start < end and b.end > start}
    changes.setdefault("chunks", overlapping(p.chunks, start, end))
    return replace(p, text=doc.text[start:end], char_start=start, char_end=end, pages=tuple(sorted(pages)) or p.pages,
                   **changes)   # type: ignore[arg-type]


def overlapping(chunks: Sequence[ContextChunk], start: int, end: int) -> list[ContextChunk]:
    """The chunks with text inside ``[start, end)`` (a trimmed passage no longer claims the ones it cut off)."""
    return [c for c in chunks
            if c.char_start is None or c.char_end is None or (c.char_start < end and c.char_end > start)]


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


_WORD_END = re.compile(r"(?<=[^ ]) ")
_WORD_START = re.compile(r"(?<= )[^ ]")


def word_ends(text: str, lo: int, hi: int) -> list[int]:
    """Offsets ``i`` in ``(lo, hi)`` where a word ends (``text[i]`` a space after a non-space)."""
    return [m.start() for m in _WORD_END.finditer(text, lo + 1, hi)]


def word_starts(text: str, lo: int, hi: int) -> list[int]:
    """Offsets ``i`` in ``(lo, hi)`` where a word starts (a non-space after a space)."""
    return [m.start() for m in _WORD_START.finditer(text, lo + 1, hi)]


def grow(p: Passage, doc: StoredDocument, bounds: tuple[int, int], room: int, cost: Callable[[str], int],
         per_side: int | None = None, words: bool = False) -> tuple[Passage, int]:
    """Widen ``p`` by whole sentences inside ``bounds`` (next, then previous, alternately) while ``room`` allows.

    ``per_side`` caps the tokens added on each side (``neighbours``). Each
    step costs the tokens of the text it adds (the assembler recounts the
    whole context at the end, so a BPE merge across the seam cannot push it
    over the budget). With ``words``, a side whose next sentence does not fit
    takes as many of its words as do (a retrieved chunk partly packed, as
    naive truncation would). Returns the passage (``p`` itself when nothing
    fitted) and the tokens added.
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
            left = room - used["after"] - used["before"]
            # A sentence far longer than the room (a capped passage's next chunk, most often) is not counted whole;
            # its length then guides the search for the words that fit (~4 characters a token).
            counted = len(piece) <= MAX_CHARS_PER_TOKEN * left
            added = cost(piece) if counted else left + 1
            whole = added if counted else max(len(piece) // 4, added)
            if added > left or (per_side is not None and used[side] + added > per_side):
                sides[side] = []
                if words and left > 1:
                    cut = _words_within(doc.text, end, e, left, cost, whole) if side == "after" else \
                        _words_within(doc.text, start, s, left, cost, whole)
                    if cut is not None:
                        n, edge = cut
                        used[side] += n
                        start, end = (start, edge) if side == "after" else (edge, end)
                continue
            sides[side].pop(0)
            used[side] += added
            start, end = (start, e) if side == "after" else (s, end)
    if (start, end) == (p.char_start, p.char_end):
        return p, 0
    return respan(p, doc, start, end, expanded=True), used["after"] + used["before"]


def _words_within(text: str, fixed: int, far: int, room: int, cost: Callable[[str], int],
                  whole: int) -> tuple[int, int] | None:
    """The farthest word boundary ``x`` from ``fixed`` towards ``far`` with ``cost(text between) <= room``
    (``whole``: the tokens of all the text between ``fixed`` and ``far``, which guides the search).

    Returns (tokens, x), or None when not one word fits.
    """
    forward = far > fixed
    marks = word_ends(text, fixed, far) if forward else word_starts(text, far, fixed)[::-1]

    def piece(x: int) -> str:
        return text[fixed:x] if forward else text[x:fixed]

    i = last_fit(marks, lambda x: cost(piece(x)) <= room, proportional(len(marks), room, whole))
    return (cost(piece(marks[i])), marks[i]) if i >= 0 else None    # counted already: the counter memoizes


def last_fit(marks: Sequence[int], fits: Callable[[int], bool], guess: int | None = None) -> int:
    """The index of the last mark that fits, where fitting is monotone (every mark before a fitting one fits);
    -1 when none does.

    Without ``guess``, a binary search: ~log2(len(marks)) calls of ``fits``. With one (an index expected near the
    answer), a galloping search out from it, then a binary search in the bracket it found: the same index, in two
    or three calls when the guess is off by a word or so. Each call counts tokens, so this is most of what
    trimming a passage to a budget costs."""
    lo, hi, found = 0, len(marks) - 1, -1
    if guess is not None and hi > 2:
        g = min(max(guess, 0), hi)
        steps = _gallop()
        step = next(steps)
        if fits(marks[g]):
            found = g
            while found + step <= hi and fits(marks[found + step]):
                found += step
                step = next(steps)
            lo, hi = found + 1, min(found + step - 1, hi)
        else:
            bad = g
            while bad - step >= 0 and not fits(marks[bad - step]):
                bad -= step
                step = next(steps)
            if bad - step >= 0:
                found = bad - step
            lo, hi = found + 1, bad - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(marks[mid]):
            found, lo = mid, mid + 1
        else:
            hi = mid - 1
    return found


def _gallop() -> Iterator[int]:
    """Steps 1, 1, 2, 4, ...: most guesses are off by a word or two, which two unit steps settle."""
    yield 1
    step = 1
    while True:
        yield step
        step *= 2


def proportional(n_marks: int, room: int, whole: int) -> int:
    """Where in ``n_marks`` evenly spread word boundaries a text of ``whole`` tokens holds ``room`` of them: the
    guess :func:`last_fit` starts from."""
    return round(n_marks * room / whole) - 1 if whole > 0 else n_marks - 1
