"""``POST /v1/retrieve``: grounded context for an LLM, or an explicit statement that there is none."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from fathom.retrieval.guard import GuardPolicy, Reason, Status
from fathom.retrieval.injection import scan_fields as scan_injection
from fathom.retrieval.query_pipeline import DeadlineExceeded, RetrievalQuery, RetrievalResult
from fathom.retrieval.rerank.interface import Candidate, Deadline
from fathom.retrieval.store.contract import MetadataFilter, StoreUnavailable
from fathom.retrieval.tenancy import Tenant
from fathom.service.api.deps import Caller, app_caller, runtime
from fathom.service.api.schemas import ChunkOut, Provenance, RetrieveRequest, RetrieveResponse
from fathom.service.cache.answers import AnswerParams, Lookup
from fathom.service.observability.context import RequestContext
from fathom.service.problems import Problem
from fathom.service.runtime import Runtime

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["retrieval"])

# Payload fields surfaced as chunk metadata (the rest is internal bookkeeping or shown as provenance).
_METADATA_KEYS = ("source", "source_uri", "title", "filetype", "language", "section", "section_path", "pages",
                  "tags", "pii", "redacted", "ingested_at", "content_hash")


def _chunk(c: Candidate, index_version: int | None) -> ChunkOut:
    p = c.hit.payload
    metadata = {k: p[k] for k in _METADATA_KEYS if p.get(k) not in (None, "", [], {})}
    # Flagged, never dropped: whether injected-looking text is wanted is the calling app's decision. Every field
    # the chunk is returned with is scanned (apps put titles, file names and tags into prompts too).
    injection = scan_injection(c.hit.text, metadata)
    return ChunkOut(
        id=c.hit.id, document_id=c.hit.document_id, text=c.hit.text,
        score=round(c.rerank_score if c.rerank_score is not None else c.fused_score, 6),
        confidence=round(c.confidence, 4),
        metadata=metadata,
        provenance=Provenance(index_version=index_version, doc_version=p.get("doc_version"),
                              chunk_index=p.get("chunk_index"), char_start=p.get("char_start"),
                              char_end=p.get("char_end"), fused_rank=c.fused_rank, fused_score=round(c.fused_score, 6),
                              dense_cosine=None if c.dense_cos is None else round(c.dense_cos, 4),
                              rerank_score=None if c.rerank_score is None else round(c.rerank_score, 6)),
        flags=injection.flags,
        flag_details=injection.details,
    )


def to_response(result: RetrievalResult, request_id: str) -> RetrieveResponse:
    chunks = [_chunk(c, result.index_version) for c in result.candidates]
    return RetrieveResponse(
        status=result.status.value, reasons=[r.value for r in result.reasons], confidence=round(result.confidence, 4),
        degraded=result.degraded, reranker=result.reranker, chunks=chunks,
        timings_ms={k: round(v, 3) for k, v in result.timings_ms.items()},
        index_version=result.index_version, request_id=request_id,
        flags=sorted({f for c in chunks for f in c.flags}),
    )


def unavailable(request_id: str, reason: Reason, detail: str) -> JSONResponse:
    body: dict[str, Any] = RetrieveResponse(
        status=Status.UNAVAILABLE.value, reasons=[reason.value], confidence=0.0, degraded=[], reranker=None,
        chunks=[], timings_ms={}, index_version=None, request_id=request_id).model_dump()
    body["detail"] = detail
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})


@router.post("/retrieve", response_model=RetrieveResponse, responses={
    503: {"model": RetrieveResponse, "description": "A dependency is down: status `unavailable`"},
    413: {"description": "The body is over limits.retrieve_max_bytes (problem+json `payload_too_large`)"},
    504: {"description": "The request deadline (service.request_timeout_ms) passed before any context was found: "
                         "problem+json `deadline_exceeded`. Past it only before reranking, the answer is `degraded` "
                         "with reason `deadline_exceeded` instead."}})
def retrieve(body: RetrieveRequest, request: Request, caller: Annotated[Caller, Depends(app_caller)],
             rt: Annotated[Runtime, Depends(runtime)]) -> Any:
    """Hybrid BM25 + dense retrieval with reranking and the empty-context guard.

    The tenant comes from the API key. ``status`` tells the caller what to do
    with the answer: ``ok`` (use the chunks), ``degraded`` (usable, a stage
    fell back: see ``reasons``), ``no_relevant_context`` (do not answer from
    context) or ``unavailable`` (503, retry later). ``cache`` says whether the
    answer came from the answer cache.
    """
    ctx: RequestContext = request.state.request_context
    request_id = getattr(request.state, "request_id", None) or uuid.uuid4().hex
    try:
        flt = MetadataFilter(body.filters) if body.filters else None
    except ValueError as exc:
        raise Problem(422, "invalid_filter", "Invalid filter", str(exc)) from None
    if body.top_k > rt.settings.retrieval.max_top_k:
        raise Problem(422, "top_k_too_large", "top_k too large", f"at most {rt.settings.retrieval.max_top_k}")
    policy = rt.tenants.get(caller.tenant).guard
    if rt.settings.service.debug_log_content:
        ctx.log_fields["query"] = body.query
    timeout_ms = rt.settings.service.request_timeout_ms
    try:
        response = _answer(rt, ctx, caller.tenant, body, flt, policy, Deadline(ctx.started + timeout_ms / 1000.0))
    except StoreUnavailable as exc:
        rt.metrics.retrievals.labels(Status.UNAVAILABLE.value).inc()
        ctx.log_fields["retrieve_status"] = Status.UNAVAILABLE.value
        return unavailable(request_id, Reason.STORE_UNAVAILABLE, str(exc).split(":")[0])
    except DeadlineExceeded as exc:
        rt.metrics.retrievals.labels(Reason.DEADLINE_EXCEEDED.value).inc()
        ctx.log_fields["retrieve_status"] = Reason.DEADLINE_EXCEEDED.value
        raise Problem(504, "deadline_exceeded", "Deadline exceeded",
                      f"{exc}; the request timeout is {timeout_ms:g} ms") from None
    ctx.add_ms("total", (time.monotonic() - ctx.started) * 1000.0)
    response.request_id = request_id
    response.timings_ms = {k: round(v, 3) for k, v in ctx.stages_ms.items()}
    rt.metrics.retrievals.labels(response.status).inc()
    rt.metrics.guard_outcomes.labels(caller.tenant.id, response.status,
                                     response.reasons[-1] if response.reasons else "none").inc()
    ctx.log_fields.update({"retrieve_status": response.status, "reasons": response.reasons, "cache": response.cache,
                           "chunks": len(response.chunks), "index_version": response.index_version})
    if response.flags:
        ctx.log_fields["flags"] = response.flags
    return response


def _answer(rt: Runtime, ctx: RequestContext, tenant: Tenant, body: RetrieveRequest, flt: MetadataFilter | None,
            policy: GuardPolicy, deadline: Deadline) -> RetrieveResponse:
    """From the answer cache (exact, then semantic) or from the pipeline, storing a fresh ``ok`` answer."""
    lookup, dense = Lookup("off"), None
    if rt.answers is not None:
        params = AnswerParams(body.mode, body.top_k, body.rerank, body.filters, policy.min_confidence,
                              policy.min_chunk_confidence)
        with ctx.stage("cache"):
            version = rt.pipeline.store.live_version(tenant)
            lookup = rt.answers.lookup(tenant, version, params, body.query) if version is not None else Lookup("miss")
        if lookup.semantic and lookup.answer is None:
            # Embedded once, here: the semantic step, the stored entry and the pipeline all use this vector.
            with ctx.stage("embed"):
                dense = _embed(rt, body.query)
            if dense is not None:
                with ctx.stage("cache"):
                    lookup = rt.answers.match(lookup, tenant, dense, body.query)
        rt.metrics.cache_lookups.labels(lookup.outcome.replace("-", "_")).inc()
    if lookup.answer is not None:
        return RetrieveResponse(**lookup.answer, timings_ms={}, request_id="", cache=lookup.outcome)
    query = RetrievalQuery(tenant=tenant, text=body.query, top_k=body.top_k, mode=body.mode, rerank=body.rerank,
                           filter=flt, policy=policy, deadline=deadline, dense=dense)
    result = rt.pipeline.retrieve(query, span=ctx.span_only)
    for stage, ms in result.timings_ms.items():
        if stage != "total":
            ctx.add_ms(stage, ms)
    response = to_response(result, "")
    response.cache = lookup.outcome
    if result.status is Status.OK and rt.answers is not None:
        with ctx.stage("cache"):
            rt.answers.put(lookup, tenant, dense, response.model_dump(exclude={"request_id", "timings_ms", "cache"}),
                           body.query)
    return response


def _embed(rt: Runtime, text: str) -> np.ndarray | None:
    """The query vector, or None: the pipeline then embeds again and, if that fails too, degrades to BM25 and says so."""
    try:
        return np.asarray(rt.pipeline.embedder.embed_query(text), dtype=np.float32)
    except Exception as exc:
        log.debug("query embedding for the cache failed: %s", type(exc).__name__)
        return None
