"""Pydantic models at the HTTP edge.

Requests are strict: unknown fields are rejected, and JSON types must be the declared ones - no coercion
(``"top_k": "5"``, ``"top_k": true`` and ``"rerank": "yes"`` are 422 problems, not 5 and true).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from fathom.retrieval.identifiers import filters_json_schema

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
         "filters": {"filetype": "text/markdown"}}]})

    query: str = Field(..., min_length=1, max_length=2000, description="The user's question or search text")
    top_k: int = Field(5, ge=1, le=100, description="Maximum chunks to return")
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    rerank: bool = Field(True, description="Run the second-stage reranker (if one is configured)")
    filters: Annotated[dict[str, FilterValue] | None, WithJsonSchema(filters_json_schema())] = Field(
        None, description="Exact-match payload filters: document_id, filetype, language, source, section, page, "
                          "tags.<key> (keys as tag keys are at ingest: [a-z0-9_-], 1-64); a list (1-100 values) "
                          "means any of; integers are 64-bit. Anything else is a 422 `invalid_filter`")

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


class RetrieveResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "ok", "reasons": [], "confidence": 0.82, "degraded": [], "reranker": "mpnet-rescore",
        "chunks": [{"id": "2f0c...", "document_id": "honeybees.md", "text": "Forager bees perform a waggle dance...",
                    "score": 0.71, "confidence": 0.82,
                    "metadata": {"source": "honeybees.md", "section": "Honeybees > Communication", "filetype": "text/markdown"},
                    "provenance": {"index_version": 1, "doc_version": 1, "chunk_index": 2, "fused_rank": 0,
                                   "fused_score": 0.67, "dense_cosine": 0.63, "rerank_score": 0.71}}],
        "timings_ms": {"embed": 2.1, "search": 1.4, "rerank": 17.0, "guard": 0.1, "total": 21.0},
        "index_version": 1, "request_id": "b5c1...", "cache": "miss"}]})

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
    cache: Literal["hit-exact", "hit-semantic", "miss", "bypassed", "off"] = Field(
        "off", description="Answer cache: hit-exact, hit-semantic (a near-identical earlier question of the same "
                           "tenant and index), miss, bypassed (Redis unreachable: answered without cache) or off")
