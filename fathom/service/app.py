"""FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fathom.service.core.config import Settings, get_settings
from fathom.service import problems
from fathom.service.api import admin, documents, health, metrics_route, openapi, retrieve
from fathom.service.limits import BodyLimit
from fathom.service.observability.middleware import RequestTelemetry
from fathom.service.runtime import Runtime


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """Build the app. With ``runtime`` given (tests), the caller owns its lifecycle."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        app.state.runtime = runtime or Runtime.open(settings)
        jobs = app.state.runtime.jobs
        if jobs is not None and jobs.consume_in_api:
            jobs.start_consumer(app.state.runtime.job_services())   # reindex jobs run here, never in a request thread
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
    # Added first = innermost: telemetry (which also sets X-Request-ID) wraps the body limit, so a 413 is logged
    # and counted like any other answer. Both are plain ASGI middlewares: a BaseHTTPMiddleware costs a task and a
    # stream per request, which is most of a cache hit's time.
    app.add_middleware(BodyLimit, default=settings.service.max_request_bytes,
                       per_path={"/v1/retrieve": settings.limits.retrieve_max_bytes})
    app.add_middleware(RequestTelemetry)

    app.include_router(health.router)
    # Every authenticated route can answer these problems (auth, malformed or invalid bodies, rate limits).
    authed = problems.responses(400, 401, 403, 422, 429)
    app.include_router(retrieve.router, responses=authed)
    app.include_router(metrics_route.router)
    app.include_router(documents.router, responses=authed)
    app.include_router(admin.router, responses=authed)
    openapi.install(app)      # errors documented as application/problem+json
    return app
