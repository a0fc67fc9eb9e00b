"""``GET /metrics``: Prometheus text format, for the cluster's scraper.

What it exposes: request, stage and cache timings and counts by route, status, stage and result; the
answer cache's state; Redis errors by operation; and two series labelled with a **tenant id**:
``fathom_guard_outcomes_total{tenant,status,reason}`` and ``fathom_rate_limited_total{tenant,scope}``, so
anyone who can read ``/metrics`` learns which tenants made requests and how their answers went. Never a
query, chunk text, document id or key. Unauthenticated by default (scraped inside the cluster, where the
chart's NetworkPolicy admits only the scraper); set ``FATHOM_SERVICE__METRICS_TOKEN`` and the scraper must
send ``Authorization: Bearer <token>`` (401 otherwise).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from fathom.service.api.deps import runtime
from fathom.service.problems import Problem, responses
from fathom.service.runtime import Runtime

router = APIRouter(tags=["health"])


def metrics_reader(request: Request) -> None:
    """With a metrics token configured, the caller must present it as a bearer token."""
    token = request.app.state.runtime.settings.service.metrics_token
    if not token:
        return
    auth = request.headers.get("authorization", "")
    given = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise Problem(401, "unauthenticated", "Metrics need the metrics token",
                      "send Authorization: Bearer <FATHOM_SERVICE__METRICS_TOKEN>", headers={"WWW-Authenticate": "Bearer"})


@router.get("/metrics", response_class=Response, dependencies=[Depends(metrics_reader)], responses={
    200: {"description": "Prometheus text exposition format", "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
    **responses(401)})
def metrics(rt: Annotated[Runtime, Depends(runtime)]) -> Response:
    state = rt.answer_cache.state() if rt.answer_cache is not None else "off"
    return Response(rt.metrics.render(state), media_type=CONTENT_TYPE_LATEST)
