"""Pseudo-queries cut from the corpus itself, for domain adaptation without labels.

Three cuts, each pairing a short text with the passage it introduces:

* ``title``: a document's title -> its body;
* ``lead``: the body's first sentence -> the rest of the passage (title kept);
* ``section``: a section heading -> that section's text.

The query part is always removed from the positive, otherwise the model would
learn string matching instead of relevance. When the query *is* a heading
(``title``, ``section``), every passage of that query's list is compared
without its section prefix (``bare``), so the heading cannot leak in through
the positive while negatives keep theirs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fathom.retrieval.rerank.cross_encoder import format_passage
from fathom.training.rerank.data import CorpusRecord

# A sentence ends at . ! ? followed by space and an upper-case letter, digit or bracket.
# Abbreviations ("e.g. the") rarely precede a capital, so this is good enough for a lead sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class PseudoQueryConfig:
    min_query_words: int = 4          # "Results", "Introduction": too generic to have one answer
    max_query_words: int = 64         # longer "sentences" are usually a failed split
    min_positive_words: int = 20      # the rest must still be a passage worth ranking
    kinds: tuple[str, ...] = ("title", "lead", "section")


@dataclass(frozen=True, slots=True)
class PseudoQuery:
    text: str
    doc_id: str
    positive: str                     # the passage the query introduces, query part removed
    kind: str                         # title | lead | section
    bare: bool                        # compare passages without their section prefix


def words(text: str) -> int:
    return len(_WORD.findall(text))


def split_lead(text: str) -> tuple[str, str]:
    """The first sentence and the rest (``rest`` is empty when there is one sentence)."""
    parts = _SENTENCE_END.split(text.strip(), maxsplit=1)
    return (parts[0].strip(), parts[1].strip()) if len(parts) == 2 else (parts[0].strip(), "")


def _last_heading(path: str) -> str:
    return path.split(" > ")[-1].strip()


def pseudo_queries(record: CorpusRecord, cfg: PseudoQueryConfig = PseudoQueryConfig()) -> list[PseudoQuery]:
    """Every pseudo-query one document yields (at most one per kind and section)."""
    out: list[PseudoQuery] = []

    def query_ok(q: str) -> bool:
        return cfg.min_query_words <= words(q) <= cfg.max_query_words

    body = " ".join(s.text for s in record.sections).strip()
    title = record.title.strip()
    if "title" in cfg.kinds and title and query_ok(title) and words(body) >= cfg.min_positive_words:
        out.append(PseudoQuery(title, record.doc_id, body, "title", bare=True))
    if "lead" in cfg.kinds and record.sections:
        first = record.sections[0]
        lead, rest = split_lead(first.text)
        rest = " ".join([rest, *(s.text for s in record.sections[1:])]).strip()
        if query_ok(lead) and words(rest) >= cfg.min_positive_words:
            out.append(PseudoQuery(lead, record.doc_id, format_passage(first.heading or title, rest), "lead",
                                   bare=False))
    if "section" in cfg.kinds:
        seen: set[str] = {title.casefold()}
        for section in record.sections:
            heading = _last_heading(section.heading)
            if heading.casefold() in seen or not query_ok(heading) or words(section.text) < cfg.min_positive_words:
                continue
            seen.add(heading.casefold())
            out.append(PseudoQuery(heading, record.doc_id, section.text.strip(), "section", bare=True))
    return out
