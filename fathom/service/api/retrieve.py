"""``POST /v1/retrieve``: grounded context for an LLM, or an explicit statement that there is none.

The route validates, maps errors to HTTP and records metrics; ``fathom.service.answering.answer`` answers.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from fathom.retrieval.guard import Reason, Status
from fathom.retrieval.query_pipeline import DeadlineExceeded
from fathom.retrieval.rerank.interface import Deadline
from fathom.retrieval.store.contract import MetadataFilter, StoreUnavailable
from fathom.service.answering import Question, answer
from fathom.service.api.context import context_options
from fathom.service.api.deps import Caller, app_caller, runtime
from fathom.service.api.schemas import RetrieveRequest, RetrieveResponse
from fathom.service.observability.context import RequestContext
from fathom.service.problems import Problem
from fathom.service.runtime import Runtime

router = APIRouter(prefix="/v1", tags=["retrieval"])


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
    tenant_cfg = rt.tenants.get(caller.tenant)
    policy = tenant_cfg.guard
    if rt.settings.service.debug_log_content:
        ctx.log_fields["query"] = body.query
    timeout_ms = rt.settings.service.request_timeout_ms
    question = Question(caller.tenant, body.query, body.top_k, body.mode, body.rerank, body.filters, flt, policy,
                        Deadline(ctx.started + timeout_ms / 1000.0), context_options(body, tenant_cfg, rt.settings))
    try:
        response = answer(rt, ctx, question)
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
