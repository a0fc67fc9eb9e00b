"""The ready-to-paste context string and its citations.

Format (what ``max_context_tokens`` counts when ``include_context`` is on)::

    [1] first passage text

    [2] second passage text

``[n]`` maps to ``citations[n-1]``: document id, version, source, section
path, pages and the character offsets of the passage in the stored document.
"""

from __future__ import annotations

from collections.abc import Sequence

from fathom.retrieval.context.types import Citation, Passage

SEPARATOR = "\n\n"


def marker(number: int) -> str:
    return f"[{number}] "


def render(passages: Sequence[Passage]) -> str:
    return SEPARATOR.join(marker(i) + p.text for i, p in enumerate(passages, start=1))


def citations(passages: Sequence[Passage]) -> list[Citation]:
    """Numbers the passages 1..n in output order (sets ``Passage.citation``)."""
    out = []
    for i, p in enumerate(passages, start=1):
        p.citation = i
        out.append(Citation(i, p.document_id, p.doc_version, p.source, p.section_path, p.pages, p.char_start,
                            p.char_end))
    return out
