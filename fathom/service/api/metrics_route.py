"""``GET /metrics``: Prometheus text format, unauthenticated (scraped inside the cluster).

It carries ids, codes, counts and timings only: no query or chunk text (see
``fathom.service.observability.metrics`` for what the labels are).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST

from fathom.service.api.deps import runtime
from fathom.service.runtime import Runtime

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response, responses={
    200: {"description": "Prometheus text exposition format", "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}})
def metrics(rt: Annotated[Runtime, Depends(runtime)]) -> Response:
    state = rt.answer_cache.state() if rt.answer_cache is not None else "off"
    return Response(rt.metrics.render(state), media_type=CONTENT_TYPE_LATEST)
