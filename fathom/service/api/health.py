"""Liveness and readiness."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from fathom.retrieval.store.contract import StoreUnavailable
from fathom.service.api.deps import runtime
from fathom.service.runtime import Runtime

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up (no dependency checks: a liveness probe must not restart pods for a Qdrant outage)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready: the models are missing or the store is down "
                                                      "(same body, status not_ready)",
                                       "content": {"application/json": {"schema": {"type": "object"}}}}})
def readyz(rt: Annotated[Runtime, Depends(runtime)]) -> Any:
    """Ready to serve: models loaded and the store reachable.

    ``checks.cache`` is ``ok`` (Redis reachable), ``memory`` (in-process, no Redis configured), ``off`` or
    ``bypassed`` (Redis unreachable). ``bypassed`` does not make the process unready: it answers without the
    cache, and taking every replica out of the load balancer over a cache outage would turn it into an outage.
    """
    checks: dict[str, str] = {"models": "ok" if rt.models.dense is not None else "missing"}
    try:
        rt.store.ping()
        checks["store"] = "ok"
    except StoreUnavailable as exc:
        checks["store"] = f"unavailable: {exc}"
    checks["cache"] = rt.answer_cache.state(probe=True) if rt.answer_cache is not None else "off"
    ready = checks["models"] == "ok" and checks["store"] == "ok"
    return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503)
