"""Sentence boundaries, shared by chunking (ingest) and context assembly (retrieval).

Rule-based on purpose: spaCy's sentencizer is ~100x slower, and both callers
only need boundaries that are stable and cheap, not linguistically perfect.
"""

from __future__ import annotations

import re

_SENT_RE = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence boundaries as (start, end) offsets into ``text``; blank pieces are dropped."""
    out, start = [], 0
    for m in _SENT_RE.finditer(text):
        out.append((start, m.start() + len(m.group(0).rstrip())))
        start = m.end()
    if start < len(text):
        out.append((start, len(text)))
    return [(s, e) for s, e in out if text[s:e].strip()]


def sentence_spans(text: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """Sentences of ``text[lo:hi]`` as absolute offsets (blocks are split first: a sentence never spans two).

    Context assembly's split; chunks' splits are stored at ingest (fathom/retrieval/context/facts.py): bump its
    ``FACTS_VERSION`` when this or ``split_sentences`` changes.
    """
    out: list[tuple[int, int]] = []
    pos = lo
    for part in text[lo:hi].split("\n\n"):
        out.extend((pos + s, pos + e) for s, e in split_sentences(part))
        pos += len(part) + 2
    return out
