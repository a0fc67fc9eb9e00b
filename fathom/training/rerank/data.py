"""What training is made of: corpus records, mined passages and labelled query lists.

A :class:`QueryList` is one query with the candidates the first stage would
hand the reranker (in fused order, each with its label), so the same object
serves as training material (positives + sampled hard negatives) and as a
validation case (rerank the list, compute nDCG@10), exactly like serving.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fathom.retrieval.rerank.cross_encoder import format_passage


@dataclass(frozen=True, slots=True)
class Section:
    """A run of text under one heading path (``" > "``-joined, as the indexer stores it)."""

    heading: str
    text: str


@dataclass(frozen=True, slots=True)
class CorpusRecord:
    """One document of the corpus, as the caller could reconstruct it (BEIR rows, or a tenant's chunks)."""

    doc_id: str
    title: str
    sections: tuple[Section, ...]

    def passage(self) -> str:
        """The document as one passage in serving format (the reranker truncates it)."""
        if not self.sections:
            return self.title
        first = self.sections[0]
        body = " ".join(s.text for s in self.sections)
        return format_passage(first.heading or self.title, body)


@dataclass(frozen=True, slots=True)
class MinedPassage:
    """One first-stage result for a query: the best chunk of a document, in fused order."""

    doc_id: str
    section: str
    text: str
    fused_score: float


# query -> passages in first-stage (fused) order, one per document.
Miner = Callable[[str], list[MinedPassage]]


@dataclass(frozen=True, slots=True)
class LabelledQuery:
    """A judged query: a golden-set entry or a qrels row set (never from a test split)."""

    qid: str
    text: str
    relevant: dict[str, int]          # doc id -> grade (> 0)


@dataclass(frozen=True, slots=True)
class ListItem:
    doc_id: str
    passage: str                      # exactly what the reranker scores
    fused_score: float
    label: int                        # graded relevance; 0 = negative


@dataclass(slots=True)
class QueryList:
    """A query, its first-stage candidates (what the reranker sees) and the positives it missed.

    ``unseen_positives`` are relevant passages the first stage did not return:
    training still learns from them; validation counts them in the ideal DCG
    (a reranker cannot recover them, which is the honest figure).
    """

    query: str
    items: list[ListItem]
    kind: str                         # qrels | golden | title | lead | section
    unseen_positives: list[str] = field(default_factory=list)

    @property
    def relevant_grades(self) -> list[int]:
        """Grades of every relevant passage (seen or not) for the ideal DCG; unseen ones count as grade 1."""
        return [i.label for i in self.items if i.label > 0] + [1] * len(self.unseen_positives)

    def positives(self) -> list[str]:
        return [i.passage for i in self.items if i.label > 0] + list(self.unseen_positives)

    def negatives(self) -> list[str]:
        return [i.passage for i in self.items if i.label <= 0]
