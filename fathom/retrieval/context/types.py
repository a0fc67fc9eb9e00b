"""Typed shapes of context assembly: what goes in (ranked chunks, stored documents, options) and what comes out.

Everything here is a plain dataclass: the HTTP edge converts to and from
pydantic, the assembly modules never see a request object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from fathom.config import ContextSettings
from fathom.retrieval.context.facts import PAYLOAD_KEY, ChunkFacts
from fathom.retrieval.context.sketch import PAYLOAD_KEY as SKETCH_KEY
from fathom.retrieval.context.sketch import VocabularySketch
from fathom.retrieval.guard import Status
from fathom.retrieval.rerank.interface import Candidate
from fathom.retrieval.tenancy import Tenant

Expand = Literal["none", "neighbours", "section"]
Order = Literal["score", "document", "edges"]


@dataclass(frozen=True, slots=True)
class ContextChunk:
    """One retrieved chunk, as the guard kept it: where it sits in its document and how it ranked."""

    id: str
    document_id: str
    doc_version: int
    text: str
    char_start: int | None          # offsets into the stored document text (None: unknown, never stitched)
    char_end: int | None
    chunk_index: int | None
    score: float                    # the final ranking score (reranker's if reranked, else fused)
    confidence: float               # calibrated relevance in [0, 1] (the guard's)
    rank: int                       # 0-based position in the answer
    section_path: tuple[str, ...] = ()
    pages: tuple[int, ...] = ()
    source: str | None = None
    content_hash: str | None = None
    flags: frozenset[str] = frozenset()
    facts: ChunkFacts | None = None  # token counts and sentences stored at ingest (None: count and split here)
    sketch: VocabularySketch | None = None  # its vocabulary's sketch, stored at ingest (None: dedup compares it exactly)

    @classmethod
    def from_candidate(cls, c: Candidate, rank: int) -> "ContextChunk":
        """The chunk of a kept candidate, with the flags the pipeline's ``flag`` stage gave it."""
        p = c.hit.payload
        return cls(
            id=c.hit.id, document_id=c.hit.document_id, doc_version=int(p.get("doc_version") or 0), text=c.hit.text,
            char_start=_int(p.get("char_start")), char_end=_int(p.get("char_end")),
            chunk_index=_int(p.get("chunk_index")),
            score=float(c.rerank_score if c.rerank_score is not None else c.fused_score),
            confidence=float(c.confidence), rank=rank, section_path=tuple(p.get("section_path") or ()),
            pages=tuple(int(x) for x in p.get("pages") or ()), source=p.get("source") or p.get("source_name"),
            content_hash=p.get("content_hash"), flags=frozenset(c.flags),
            facts=ChunkFacts.from_payload(p.get(PAYLOAD_KEY)), sketch=VocabularySketch.from_payload(p.get(SKETCH_KEY)),
        )


def _int(v: Any) -> int | None:
    return None if v is None else int(v)


@dataclass(frozen=True, slots=True)
class Block:
    """A structural element of a stored document: its span in the text, section path and page."""

    start: int
    end: int
    section_path: tuple[str, ...] = ()
    page: int | None = None
    heading: bool = False


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """The normalised text of document D at version V, as ingestion stored it, and its structure.

    ``text`` is what chunk offsets point into, so any span of it is real
    document text: passages are always cut from here, never pieced together.
    """

    document_id: str
    doc_version: int
    text: str
    blocks: tuple[Block, ...] = ()
    content_hash: str | None = None


class DocumentSource(Protocol):
    """Where assembly reads stored documents from (the service implements it with the document registry).

    Always scoped by tenant: a lookup can never return another tenant's text.
    A document whose stored version is not the one asked for is left out (it
    changed after the chunks were indexed); assembly then uses the chunks' own
    text and does not stitch.
    """

    def documents(self, tenant: Tenant, wanted: Sequence[tuple[str, int]]) -> dict[tuple[str, int], StoredDocument]:
        ...


def _setting(name: str) -> Any:
    return ContextSettings.model_fields[name].default


def option_default(name: str) -> Any:
    """A request option's default (the HTTP schema declares the same ones from here)."""
    return ContextOptions.__dataclass_fields__[name].default


@dataclass(frozen=True, slots=True)
class ContextOptions:
    """How to assemble (the request's options with defaults from the tenant and settings already applied)."""

    max_tokens: int
    expand: Expand = "none"
    order: Order = "score"
    dedup: bool = True
    diversity: float = 0.0           # MMR trade-off: 0 = relevance only, 1 = novelty only
    include_context: bool = False
    highlights: int = 1              # sentences per passage
    trim: bool = True                # a passage that does not fit whole gives its best-matching sentences instead
    max_passage_tokens: int | None = _setting("max_passage_tokens")   # cap per passage, so more sources fit
    # Operator knobs: the service passes settings.context's values; these defaults are read from there too.
    dedup_threshold: float = _setting("dedup_threshold")      # shingle Jaccard at which passages are the same text
    neighbour_tokens: int = _setting("neighbour_tokens")      # `neighbours`: most tokens added on each side
    min_fragment_tokens: int = _setting("min_fragment_tokens")   # a shorter trimmed passage is not worth a citation

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if not 0.0 <= self.diversity <= 1.0:
            raise ValueError("diversity must be in [0, 1]")
        if self.highlights < 0:
            raise ValueError("highlights must be >= 0")


@dataclass(frozen=True, slots=True)
class ContextInput:
    """One assembly: the guard's verdict and kept chunks (in ranked order) for one tenant's query."""

    tenant: Tenant
    query: str
    status: Status
    chunks: Sequence[ContextChunk]
    options: ContextOptions


@dataclass(frozen=True, slots=True)
class Highlight:
    """A sentence of the passage that matches the query well; offsets are into ``Passage.text``."""

    start: int
    end: int
    score: float


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A near-identical passage collapsed into a better-scored one (listed, not repeated)."""

    document_id: str
    doc_version: int
    source: str | None
    char_start: int | None
    char_end: int | None
    chunk_ids: tuple[str, ...]
    score: float


@dataclass(slots=True)
class Passage:
    """Contiguous text of one document: one or more retrieved chunks, possibly widened or trimmed.

    When ``stitched`` is true, ``text == stored.text[char_start:char_end]``
    for the stored document it came from (tests check it).
    """

    document_id: str
    doc_version: int
    text: str
    char_start: int | None
    char_end: int | None
    chunks: list[ContextChunk]
    score: float
    confidence: float
    rank: int
    section_path: tuple[str, ...] = ()
    pages: tuple[int, ...] = ()
    source: str | None = None
    flags: frozenset[str] = frozenset()
    stitched: bool = False                   # cut from the stored document (else: one chunk's own text)
    expanded: bool = False                   # widened beyond the retrieved chunks
    trimmed: bool = False                    # cut down to its best sentences to fit the budget
    duplicates: list[Duplicate] = field(default_factory=list)
    highlights: list[Highlight] = field(default_factory=list)
    tokens: int = 0
    citation: int | None = None              # its number in the context string ([1]..[n])

    @property
    def chunk_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.chunks)


@dataclass(frozen=True, slots=True)
class Citation:
    """What ``[n]`` in the context string refers to."""

    number: int
    document_id: str
    doc_version: int
    source: str | None
    section_path: tuple[str, ...]
    pages: tuple[int, ...]
    char_start: int | None
    char_end: int | None


@dataclass(slots=True)
class ContextOutput:
    """The assembled context; ``tokens_used <= budget`` always (counted with ``tokenizer``)."""

    passages: list[Passage]
    citations: list[Citation]
    context: str | None
    tokens_used: int
    budget: int
    tokenizer: str
    assembled: bool                          # False: the guard said there is nothing to assemble
    dropped: int = 0                         # retrieved chunks in no passage (left out for the budget)
    collapsed: int = 0                       # near-duplicates collapsed into kept passages
