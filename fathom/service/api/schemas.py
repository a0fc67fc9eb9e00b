"""Pydantic models at the HTTP edge.

Requests are strict: unknown fields are rejected, and JSON types must be the declared ones - no coercion
(``"top_k": "5"``, ``"top_k": true`` and ``"rerank": "yes"`` are 422 problems, not 5 and true).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from fathom.retrieval.identifiers import filters_json_schema

from fathom.retrieval.context.types import option_default

FilterValue = str | int | bool | list[str] | list[int]

STRICT_NOTE = ("Strict: unknown fields are refused and every value must have its declared JSON type (no "
               "coercion: \"5\" is not an integer, true is not 1, \"yes\" is not a boolean); a violation is a 422 "
               "problem+json `validation_error`.")


def request_config(**extra: Any) -> ConfigDict:
    """The configuration of every request body model: strict types, no unknown fields, and said so in OpenAPI."""
    return ConfigDict(extra="forbid", strict=True, **extra)


class RetrieveRequest(BaseModel):
    __doc__ = f"A retrieval request. {STRICT_NOTE}"

    model_config = request_config(json_schema_extra={"examples": [
        {"query": "How do honeybees tell each other where flowers are?", "top_k": 5, "mode": "hybrid",
         "filters": {"filetype": "text/markdown"}},
        {"query": "How do honeybees tell each other where flowers are?", "top_k": 10, "max_context_tokens": 512,
         "expand": "neighbours", "order": "edges", "include_context": True, "highlights": 1}]})

    query: str = Field(..., min_length=1, max_length=2000, description="The user's question or search text")
    top_k: int = Field(5, ge=1, le=100, description="Maximum chunks to return")
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    rerank: bool = Field(True, description="Run the second-stage reranker (if one is configured)")
    filters: Annotated[dict[str, FilterValue] | None, WithJsonSchema(filters_json_schema())] = Field(
        None, description="Exact-match payload filters: document_id, filetype, language, source, section, page, "
                          "tags.<key> (keys as tag keys are at ingest: [a-z0-9_-], 1-64); a list (1-100 values) "
                          "means any of; integers are 64-bit. Anything else is a 422 `invalid_filter`")

    # Context assembly (fathom/retrieval/context/): runs when a budget is known (this field, else the tenant's or
    # the settings' default); the options below need one.
    max_context_tokens: int | None = Field(
        None, ge=1, strict=True, description="Token budget of the assembled context (`passages`, and `context` when "
                                             "`include_context`); the answer never exceeds it. Default: the tenant's "
                                             "(tenants file `context.max_tokens`), else settings "
                                             "`context.default_max_tokens`; without one no context is assembled")
    expand: Literal["none", "neighbours", "section"] = Field(
        option_default("expand"),
        description="Widen passages with leftover budget: `neighbours` (surrounding sentences, up to settings "
                    "`context.neighbour_tokens` a side) or `section` (the whole section)")
    order: Literal["score", "document", "edges"] = Field(
        option_default("order"),
        description="Passage order: best first, `document` (a document's passages together, in reading order) or "
                    "`edges` (best at both ends, weakest in the middle)")
    dedup: bool = Field(option_default("dedup"), strict=True,
                        description="Collapse near-identical passages into the best-scored one (the others are listed "
                                    "in its `duplicates`)")
    diversity: float = Field(option_default("diversity"), ge=0, le=1, strict=True,
                             description="MMR trade-off when choosing passages: 0 relevance only, 1 novelty only")
    include_context: bool = Field(option_default("include_context"), strict=True,
                                  description="Also return `context`: the passages as one string with citation "
                                              "markers [1]..[n]")
    max_passage_tokens: int | None = Field(
        option_default("max_passage_tokens"), ge=16, strict=True,
        description="Cap per passage (its best-matching sentences): more sources at a tight budget, less of each; "
                    "null: whole chunks (default: the operator's context.max_passage_tokens)")
    highlights: int = Field(option_default("highlights"), ge=0, le=10, strict=True,
                            description="Sentences per passage that best match the query (offsets into its text)")

    @field_validator("query")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query must not be blank")
        return v.strip()


class Provenance(BaseModel):
    index_version: int | None
    doc_version: int | None = None
    chunk_index: int | None = None
    char_start: int | None = None
    char_end: int | None = None
    fused_rank: int
    fused_score: float
    dense_cosine: float | None = None
    rerank_score: float | None = None


class ChunkOut(BaseModel):
    id: str
    document_id: str
    text: str
    score: float = Field(description="Final ranking score (reranker score if reranked, else fusion score)")
    confidence: float = Field(ge=0, le=1)
    metadata: dict[str, object]
    provenance: Provenance
    flags: list[str] = Field(
        default_factory=list,
        description="Content flags; never a reason to drop the chunk, the caller decides. `prompt_injection`: the "
                    "text contains instruction-like content aimed at an LLM (e.g. 'ignore all previous instructions', "
                    "fake chat-role tags, requests to reveal secrets, invisible Unicode smuggling). Treat it as "
                    "untrusted data: drop it, quote it, or alert")
    flag_details: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per flag, what matched: for `prompt_injection` the pattern families among override_instructions, "
                    "role_reassignment, jailbreak, system_prompt, chat_role_tags, addressed_to_ai, exfiltration, "
                    "hidden_unicode; `prompt_injection_fields` lists where (`text`, `metadata.title`, "
                    "`metadata.source`, `metadata.tags.<key>`, ...): every field the chunk is returned with is scanned")


class HighlightOut(BaseModel):
    start: int = Field(description="Offset into the passage's `text`")
    end: int
    score: float = Field(description="Summed weight of the query terms the sentence contains")


class DuplicateOut(BaseModel):
    document_id: str
    doc_version: int
    source: str | None = None
    char_start: int | None = None
    char_end: int | None = None
    chunk_ids: list[str]
    score: float


class PassageOut(BaseModel):
    citation: int | None = Field(description="Its number [n] in `context` (and in `citations`)")
    document_id: str
    doc_version: int
    text: str = Field(description="The stored document's characters [char_start, char_end)")
    char_start: int | None = None
    char_end: int | None = None
    section_path: list[str] = Field(default_factory=list)
    pages: list[int] = Field(default_factory=list)
    source: str | None = None
    score: float = Field(description="Its best chunk's score")
    confidence: float = Field(ge=0, le=1, description="Its best chunk's confidence")
    tokens: int = Field(description="Tokens of `text` (the answer's tokenizer)")
    chunk_ids: list[str] = Field(description="The retrieved chunks it contains (ids as in `chunks`)")
    stitched: bool = Field(description="Cut from the stored document; false: one chunk's own text (its document "
                                       "changed since it was indexed)")
    expanded: bool = Field(False, description="Widened beyond its chunks (expand), or merged across a gap")
    trimmed: bool = Field(False, description="Cut down to its best-matching sentences to fit the budget")
    flags: list[str] = Field(default_factory=list, description="Union of its chunks' flags (and of its own text's, "
                                                               "where it holds text no chunk had)")
    duplicates: list[DuplicateOut] = Field(default_factory=list, description="Near-identical passages collapsed "
                                                                             "into this one")
    highlights: list[HighlightOut] = Field(default_factory=list)


class CitationOut(BaseModel):
    number: int
    document_id: str
    doc_version: int
    source: str | None = None
    section_path: list[str] = Field(default_factory=list)
    page: int | None = Field(None, description="First page of the passage (pages: all of them)")
    pages: list[int] = Field(default_factory=list)
    char_start: int | None = None
    char_end: int | None = None


class RetrieveResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "ok", "reasons": [], "confidence": 0.82, "degraded": [], "reranker": "mpnet-rescore",
        "chunks": [{"id": "2f0c...", "document_id": "honeybees.md", "text": "Forager bees perform a waggle dance...",
                    "score": 0.71, "confidence": 0.82,
                    "metadata": {"source": "honeybees.md", "section": "Honeybees > Communication", "filetype": "text/markdown"},
                    "provenance": {"index_version": 1, "doc_version": 1, "chunk_index": 2, "fused_rank": 0,
                                   "fused_score": 0.67, "dense_cosine": 0.63, "rerank_score": 0.71}}],
        "timings_ms": {"embed": 2.1, "search": 1.4, "rerank": 17.0, "guard": 0.1, "total": 21.0},
        "index_version": 1, "request_id": "b5c1...", "cache": "miss"}, {
        "status": "ok", "reasons": [], "confidence": 0.97, "degraded": [], "reranker": None,
        "chunks": [{"id": "0a00...", "document_id": "honeybees.md", "text": "Forager bees tell their nestmates...",
                    "score": 0.88, "confidence": 0.97, "metadata": {"source": "honeybees.md"},
                    "provenance": {"index_version": 1, "doc_version": 1, "chunk_index": 2, "char_start": 1043,
                                   "char_end": 1450, "fused_rank": 0, "fused_score": 0.88}}],
        "passages": [{"citation": 1, "document_id": "honeybees.md", "doc_version": 1,
                      "text": "Communication\n\nForager bees tell their nestmates where flowers are with the waggle "
                              "dance...", "char_start": 1028, "char_end": 1656,
                      "section_path": ["Honeybee Colonies", "Communication"], "pages": [], "source": "honeybees.md",
                      "score": 0.88, "confidence": 0.97, "tokens": 131, "chunk_ids": ["0a00...", "af3d..."],
                      "stitched": True, "expanded": True, "trimmed": False, "flags": [], "duplicates": [],
                      "highlights": [{"start": 15, "end": 88, "score": 4.39}]}],
        "context": "[1] Communication\n\nForager bees tell their nestmates where flowers are with the waggle dance...",
        "citations": [{"number": 1, "document_id": "honeybees.md", "doc_version": 1, "source": "honeybees.md",
                       "section_path": ["Honeybee Colonies", "Communication"], "page": None, "pages": [],
                       "char_start": 1028, "char_end": 1656}],
        "tokens_used": 135, "max_context_tokens": 300, "tokenizer": "approx",
        "timings_ms": {"embed": 2.1, "search": 1.4, "guard": 0.1, "context": 1.2, "total": 6.0},
        "index_version": 1, "request_id": "c7d2...", "cache": "miss"}]})

    status: Literal["ok", "degraded", "no_relevant_context", "unavailable"]
    reasons: list[str] = Field(description="Machine-readable codes explaining the status")
    confidence: float = Field(ge=0, le=1, description="How relevant the best chunk is judged to be")
    degraded: list[str] = Field(description="Stages that fell back (subset of reasons)")
    reranker: str | None = Field(description="The reranker that ran, if any")
    chunks: list[ChunkOut]
    timings_ms: dict[str, float]
    index_version: int | None
    request_id: str
    flags: list[str] = Field(
        default_factory=list, description="Union of the chunks' flags (e.g. `prompt_injection` when any chunk is "
                                          "flagged); empty when no chunk is")
    passages: list[PassageOut] = Field(
        default_factory=list, description="The assembled context (when a budget is set): merged, de-duplicated, "
                                          "budgeted passages in the requested order; empty unless status is ok or "
                                          "degraded")
    context: str | None = Field(None, description="With include_context: the passages as one string, "
                                                  "'[1] text\\n\\n[2] text...'")
    citations: list[CitationOut] = Field(default_factory=list, description="What [n] in `context` refers to")
    tokens_used: int | None = Field(None, description="Tokens of `context` (include_context) or of the passages' "
                                                      "texts; never over max_context_tokens")
    max_context_tokens: int | None = Field(None, description="The budget applied (the request's or a default)")
    tokenizer: str | None = Field(None, description="What counted the tokens: approx, cl100k_base or "
                                                    "tokenizer.json:<name>")
    cache: Literal["hit-exact", "hit-semantic", "miss", "bypassed", "off"] = Field(
        "off", description="Answer cache: hit-exact, hit-semantic (a near-identical earlier question of the same "
                           "tenant and index), miss, bypassed (Redis unreachable: answered without cache) or off")
