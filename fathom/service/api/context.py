"""The retrieve route's context assembly: request options in, ``passages`` / ``context`` / ``citations`` out.

Called from one place (``fathom.service.answering.answer``) after the pipeline,
i.e. after the guard decided; the assembler itself refuses to assemble from anything but an
``ok`` or ``degraded`` answer. The options are part of the answer-cache key.
"""

from __future__ import annotations

from typing import Any

from fathom.config import Settings
from fathom.retrieval.context import ContextAssembler, ContextChunk, ContextInput, ContextOptions, ContextOutput
from fathom.retrieval.query_pipeline import RetrievalResult
from fathom.retrieval.tenancy import Tenant
from fathom.service.api.schemas import (CitationOut, DuplicateOut, HighlightOut, PassageOut, RetrieveRequest,
                                        RetrieveResponse)
from fathom.service.problems import Problem
from fathom.service.tenants import TenantConfig

_OPTION_FIELDS = ("expand", "order", "dedup", "diversity", "include_context", "highlights", "max_passage_tokens")


def context_options(body: RetrieveRequest, tenant: TenantConfig, settings: Settings) -> ContextOptions | None:
    """The request's options with the tenant's and the settings' defaults; None when no budget applies."""
    cfg = settings.context
    budget = body.max_context_tokens if body.max_context_tokens is not None else tenant.context_max_tokens
    if budget is None:
        named = sorted(set(_OPTION_FIELDS) & body.model_fields_set)
        if named:
            raise Problem(422, "context_budget_required", "Context options need a token budget",
                          f"{', '.join(named)} given without max_context_tokens, and this tenant has no default")
        return None
    if body.max_context_tokens is not None and budget > cfg.max_tokens_limit:
        raise Problem(422, "max_context_tokens_too_large", "max_context_tokens too large",
                      f"at most {cfg.max_tokens_limit}")
    return ContextOptions(
        max_tokens=min(budget, cfg.max_tokens_limit), expand=body.expand, order=body.order, dedup=body.dedup,
        diversity=body.diversity, include_context=body.include_context, highlights=body.highlights,
        max_passage_tokens=(body.max_passage_tokens if "max_passage_tokens" in body.model_fields_set
                            else cfg.max_passage_tokens),
        dedup_threshold=cfg.dedup_threshold,
        neighbour_tokens=cfg.neighbour_tokens,
        min_fragment_tokens=cfg.min_fragment_tokens)


def cache_key(options: ContextOptions | None, assembler: ContextAssembler | None) -> dict[str, Any] | None:
    """Everything that shapes the assembled context (AnswerParams.context)."""
    if options is None:
        return None
    return {"max_tokens": options.max_tokens, "expand": options.expand, "order": options.order, "dedup": options.dedup,
            "diversity": options.diversity, "include_context": options.include_context,
            "highlights": options.highlights, "max_passage_tokens": options.max_passage_tokens,
            "tokenizer": assembler.tokenizer.name if assembler else None}


def attach_context(assembler: ContextAssembler, tenant: Tenant, query: str, result: RetrievalResult,
                   response: RetrieveResponse, options: ContextOptions) -> None:
    """Assemble from the guard's kept chunks (with the pipeline's flags) into ``response``."""
    chunks = [ContextChunk.from_candidate(c, i) for i, c in enumerate(result.candidates)]
    out = assembler.run(ContextInput(tenant, query, result.status, chunks, options))
    apply(response, out)


def apply(response: RetrieveResponse, out: ContextOutput) -> None:
    response.passages = [PassageOut(
        citation=p.citation, document_id=p.document_id, doc_version=p.doc_version, text=p.text,
        char_start=p.char_start, char_end=p.char_end, section_path=list(p.section_path), pages=list(p.pages),
        source=p.source, score=round(p.score, 6), confidence=round(p.confidence, 4), tokens=p.tokens,
        chunk_ids=list(p.chunk_ids), stitched=p.stitched, expanded=p.expanded, trimmed=p.trimmed,
        flags=sorted(p.flags),
        duplicates=[DuplicateOut(document_id=d.document_id, doc_version=d.doc_version, source=d.source,
                                 char_start=d.char_start, char_end=d.char_end, chunk_ids=list(d.chunk_ids),
                                 score=round(d.score, 6)) for d in p.duplicates],
        highlights=[HighlightOut(start=h.start, end=h.end, score=h.score) for h in p.highlights],
    ) for p in out.passages]
    response.citations = [CitationOut(
        number=c.number, document_id=c.document_id, doc_version=c.doc_version, source=c.source,
        section_path=list(c.section_path), page=c.pages[0] if c.pages else None, pages=list(c.pages),
        char_start=c.char_start, char_end=c.char_end) for c in out.citations]
    response.context = out.context
    response.tokens_used = out.tokens_used
    response.max_context_tokens = out.budget
    response.tokenizer = out.tokenizer
