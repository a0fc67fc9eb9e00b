"""FastAPI application factory."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from retrieval.settings import Settings, get_settings
from service import problems
from service.api import admin, documents, health, metrics, openapi, retrieve
from service.limits import BodyLimit
from service.observability.middleware import RequestTelemetry
from service.runtime import Runtime


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """Build the app. With ``runtime`` given (tests), the caller owns its lifecycle."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        app.state.runtime = runtime or Runtime.open(settings)
        jobs = app.state.runtime.jobs
        if jobs is not None and jobs.consume_in_api:
            jobs.start_consumer(app.state.runtime)   # reindex jobs run here, never in a request thread
        try:
            yield
        finally:
            if jobs is not None:
                jobs.stop_consumer()
            if owned:
                app.state.runtime.close()

    app = FastAPI(title="Fathom", version="0.1.0", lifespan=lifespan,
                  description="Retrieval service: hybrid BM25 + dense search, reranking and empty-context guards.")
    problems.install(app)
    # Added first = innermost: request_id (below) wraps telemetry, which wraps the body limit, so a 413 is
    # logged and counted like any other answer.
    app.add_middleware(BodyLimit, default=settings.service.max_request_bytes,
                       per_path={"/v1/retrieve": settings.limits.retrieve_max_bytes})
    app.add_middleware(RequestTelemetry)

    @app.middleware("http")
    async def request_id(request: Request, call_next) -> Response:  # type: ignore[no-untyped-def]
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.request_id = rid
        response = await call_next(request)
        response.headers["X-Request-ID"] = rid
        return response

    app.include_router(health.router)
    # Every authenticated route can answer these problems (auth, malformed or invalid bodies, rate limits).
    authed = problems.responses(400, 401, 403, 422, 429)
    app.include_router(retrieve.router, responses=authed)
    app.include_router(metrics.router)
    app.include_router(documents.router, responses=authed)
    app.include_router(admin.router, responses=authed)
    openapi.install(app)      # errors documented as application/problem+json
    return app
