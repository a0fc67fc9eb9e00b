"""The request spine of ``POST /v1/retrieve``: answer cache -> retrieval pipeline -> answer cache.

The route validates, maps errors to HTTP and records metrics; :func:`answer`
is the one function that answers. It embeds the query at most once: the
semantic cache step, the entry stored afterwards and the pipeline all use that
vector (``RetrievalQuery.dense``).

Only ``ok`` answers are stored (``fathom/service/cache/answers.py`` says why).
Raises what the pipeline raises: ``StoreUnavailable`` (503) and
``DeadlineExceeded`` (504).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from fathom.retrieval.context import ContextOptions
from fathom.retrieval.guard import GuardPolicy, Status
from fathom.retrieval.query_pipeline import RetrievalQuery, RetrievalResult
from fathom.retrieval.rerank.interface import Candidate, Deadline
from fathom.retrieval.stages import EmbedQuery
from fathom.retrieval.store.contract import MetadataFilter, Mode, returned_metadata
from fathom.retrieval.tenancy import Tenant
from fathom.service.api.context import attach_context, cache_key
from fathom.service.api.schemas import ChunkOut, Provenance, RetrieveResponse
from fathom.service.cache.answers import AnswerParams, Lookup
from fathom.service.observability.context import RequestContext
from fathom.service.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Question:
    """A validated retrieval request of one tenant."""

    tenant: Tenant
    text: str
    top_k: int
    mode: Mode
    rerank: bool
    filters: dict[str, Any] | None      # as sent: part of the answer cache's scope
    filter: MetadataFilter | None       # the same, validated for the store
    policy: GuardPolicy
    deadline: Deadline
    context: ContextOptions | None = None   # assemble a context (max_context_tokens and the other options)


def answer(rt: Runtime, ctx: RequestContext, question: Question) -> RetrieveResponse:
    """From the answer cache (exact, then semantic) or from the pipeline, storing a fresh ``ok`` answer.

    ``request_id`` and ``timings_ms`` are left for the route to fill in (they are per request, never cached).
    """
    q, cache = question, rt.answer_cache
    lookup, dense = Lookup("off"), None
    if cache is not None:
        params = AnswerParams(q.mode, q.top_k, q.rerank, q.filters, q.policy.min_confidence,
                              q.policy.min_chunk_confidence, cache_key(q.context, rt.context))
        with ctx.stage("cache"):
            version = rt.pipeline.store.live_version(q.tenant)
            lookup = cache.lookup(q.tenant, version, params, q.text) if version is not None else Lookup("miss")
        if lookup.semantic and lookup.answer is None:
            with ctx.stage("embed"):
                dense = _embed(rt, q.text)
            if dense is not None:
                with ctx.stage("cache"):
                    lookup = cache.match(lookup, q.tenant, dense, q.text)
        rt.metrics.cache_lookups.labels(lookup.outcome.replace("-", "_")).inc()
    if lookup.answer is not None:
        return RetrieveResponse(**lookup.answer, timings_ms={}, request_id="", cache=lookup.outcome)
    result = rt.pipeline.retrieve(RetrievalQuery(tenant=q.tenant, text=q.text, top_k=q.top_k, mode=q.mode,
                                                 rerank=q.rerank, filter=q.filter, policy=q.policy,
                                                 deadline=q.deadline, dense=dense), span=ctx.span_only)
    for stage, ms in result.timings_ms.items():
        if stage != "total":
            ctx.add_ms(stage, ms)
    response = to_response(result, "")
    response.cache = lookup.outcome
    if q.context is not None and rt.context is not None:
        with ctx.stage("context"):   # after the guard: the assembler assembles nothing from no_relevant_context
            attach_context(rt.context, q.tenant, q.text, result, response, q.context)
    if result.status is Status.OK and cache is not None:
        with ctx.stage("cache"):
            cache.put(lookup, q.tenant, dense, response.model_dump(exclude={"request_id", "timings_ms", "cache"}), q.text)
    return response


def _embed(rt: Runtime, text: str) -> np.ndarray | None:
    """The query vector, or None: the pipeline then embeds again and, if that fails too, degrades to BM25 and says so."""
    try:
        return rt.pipeline.stage(EmbedQuery).embed(text)
    except Exception as exc:
        log.debug("query embedding for the cache failed: %s", type(exc).__name__)
        return None


def _chunk(c: Candidate, index_version: int | None) -> ChunkOut:
    p = c.hit.payload
    return ChunkOut(
        id=c.hit.id, document_id=c.hit.document_id, text=c.hit.text,
        score=round(c.rerank_score if c.rerank_score is not None else c.fused_score, 6),
        confidence=round(c.confidence, 4),
        metadata=returned_metadata(p),
        provenance=Provenance(index_version=index_version, doc_version=p.get("doc_version"),
                              chunk_index=p.get("chunk_index"), char_start=p.get("char_start"),
                              char_end=p.get("char_end"), fused_rank=c.fused_rank, fused_score=round(c.fused_score, 6),
                              dense_cosine=None if c.dense_cos is None else round(c.dense_cos, 4),
                              rerank_score=None if c.rerank_score is None else round(c.rerank_score, 6)),
        flags=list(c.flags),
        flag_details={flag: list(details) for flag, details in c.flags.items()}
        | {f"{flag}_fields": list(fields) for flag, fields in c.flag_fields.items()},
    )


def to_response(result: RetrievalResult, request_id: str) -> RetrieveResponse:
    """The API shape of a pipeline result (chunk flags come from the pipeline's ``flag`` stage)."""
    return RetrieveResponse(
        status=result.status.value, reasons=[r.value for r in result.reasons], confidence=round(result.confidence, 4),
        degraded=result.degraded, reranker=result.reranker,
        chunks=[_chunk(c, result.index_version) for c in result.candidates],
        timings_ms={k: round(v, 3) for k, v in result.timings_ms.items()},
        index_version=result.index_version, request_id=request_id, flags=result.flags,
    )
