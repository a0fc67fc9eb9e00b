"""Pydantic models of the documents API (``/v1/documents``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fathom.service.api.schemas import STRICT_NOTE, request_config
from fathom.retrieval.identifiers import MAX_TAGS, TAG_KEY, TAG_KEY_RULE, validate_tags

TagValue = str | int | float | bool
# The rules of fathom.retrieval.identifiers.validate_tags, stated in the OpenAPI schema too.
TAGS_SCHEMA = {"type": "object", "maxProperties": MAX_TAGS,
               "propertyNames": {"minLength": 1, "maxLength": 64, "pattern": f"^{TAG_KEY.pattern}$"},
               "additionalProperties": {"anyOf": [{"type": "string", "maxLength": 256}, {"type": "integer"},
                                                  {"type": "number"}, {"type": "boolean"}]}}


class TextDocument(BaseModel):
    __doc__ = f"One text document. {STRICT_NOTE}"

    model_config = request_config()

    id: str = Field(..., min_length=1, max_length=512,
                    description="Document id, unique per tenant; may contain '/' (e.g. a relative path)")
    text: str = Field(..., min_length=1, description="Plain text; parsed like an uploaded .txt file")
    title: str | None = Field(None, max_length=1000)
    tags: dict[str, TagValue] = Field(default_factory=dict, json_schema_extra=TAGS_SCHEMA,  # type: ignore[arg-type]
                                      description=f"Filterable as tags.<key> in retrieval; at most {MAX_TAGS}, keys of "
                                                  f"{TAG_KEY_RULE} (no '.': a dotted key could not be filtered "
                                                  "on), values of at most 256 chars")

    @field_validator("tags")
    @classmethod
    def _valid_tags(cls, v: dict[str, TagValue]) -> dict[str, TagValue]:
        """Malformed tags are a malformed request (422), checked here with the ingest rules, not per document."""
        validate_tags(v)
        return v


TEXT_EXAMPLE = {"documents": [
    {"id": "handbook/leave-policy", "title": "Leave policy", "tags": {"team": "hr"},
     "text": "Employees accrue two days of paid leave per month. Unused days carry over for one year."}]}


class TextDocumentsRequest(BaseModel):
    __doc__ = f"The JSON form of POST /v1/documents (the other is multipart file upload). {STRICT_NOTE}"

    model_config = request_config(json_schema_extra={"examples": [TEXT_EXAMPLE]})

    documents: list[TextDocument] = Field(..., min_length=1)


class DocumentOutcomeOut(BaseModel):
    id: str
    status: Literal["ok", "unchanged", "failed"]
    reason: str | None = Field(None, description="Stable reason code when failed, e.g. corrupt, empty_file, too_large, "
                                                  "decompression_bomb, invalid_document_id")
    error: str | None = Field(None, description="Human-readable detail of the failure")
    chunks: int = 0
    doc_version: int = 0


class IngestResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "documents": [{"id": "honeybees.md", "status": "ok", "reason": None, "error": None, "chunks": 6, "doc_version": 1},
                      {"id": "scan.pdf", "status": "failed", "reason": "no_text",
                       "error": "no extractable text (scanned or image-only PDF)", "chunks": 0, "doc_version": 0}],
        "summary": {"ok": 1, "unchanged": 0, "failed": 1}, "index_version": 1}]})

    documents: list[DocumentOutcomeOut] = Field(description="One outcome per submitted document, in request order")
    summary: dict[str, int]
    index_version: int | None = Field(description="The tenant's live index version after this batch")


class DocumentOut(BaseModel):
    id: str
    status: Literal["ok", "failed"]
    reason: str | None
    error: str | None
    doc_version: int
    chunk_count: int
    title: str | None
    source_name: str | None
    filetype: str | None
    language: str | None
    tags: dict[str, str]
    size_bytes: int | None = Field(description="Characters of extracted text")
    created_at: str
    updated_at: str


class DocumentList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "documents": [{"id": "honeybees.md", "status": "ok", "reason": None, "error": None, "doc_version": 1,
                       "chunk_count": 6, "title": "Honeybees", "source_name": "honeybees.md",
                       "filetype": "text/markdown", "language": "en", "tags": {"corpus": "sample"},
                       "size_bytes": 4021, "created_at": "2025-01-01T10:00:00+00:00",
                       "updated_at": "2025-01-01T10:00:00+00:00"}],
        "next_cursor": "aG9uZXliZWVzLm1k", "index_version": 1, "counts": {"ok": 8, "failed": 1}}]})

    documents: list[DocumentOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page")
    index_version: int | None
    counts: dict[str, int] = Field(description="The tenant's documents by status (all pages)")
