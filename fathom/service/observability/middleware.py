"""Per-request telemetry: the request context, the request span, request metrics and the access log line.

A plain ASGI middleware (not ``BaseHTTPMiddleware``) so the context variable
it sets is the one the endpoint's worker thread copies. Routes are labelled by
their template (``/v1/documents/{id}``), never the raw path, and unmatched
paths by ``unmatched``, so label cardinality stays fixed whatever clients send.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fathom.service.observability import context
from fathom.service.observability.context import RequestContext
from fathom.service.observability.logs import ACCESS

if TYPE_CHECKING:
    from fathom.service.runtime import Runtime

_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestTelemetry:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rt = scope["app"].state.runtime
        headers = Headers(scope=scope)
        state = scope.setdefault("state", {})
        request_id = state.get("request_id") or headers.get("x-request-id") or uuid.uuid4().hex
        state["request_id"] = request_id
        method, path = scope["method"], scope["path"]
        ctx = RequestContext(request_id, method, path, time.monotonic(), rt.tracing)
        ctx.span = rt.tracing.start_request(f"{method} {path}", headers,
                                            {"http.request.method": method, "fathom.request_id": request_id})
        state["request_context"] = ctx
        status = 500   # what the client gets if the app raises: the error middleware answers 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", request_id.encode("latin-1"))]}
            await send(message)

        token = context.activate(ctx)
        try:
            await self.app(scope, receive, send_status)
        finally:
            self._finish(rt, ctx, scope, status)
            context.deactivate(token)

    @staticmethod
    def _finish(rt: Runtime, ctx: RequestContext, scope: Scope, status: int) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        seconds = time.monotonic() - ctx.started
        rt.metrics.requests.labels(route, str(status)).inc()
        rt.metrics.request_seconds.labels(route, str(status)).observe(seconds)
        rt.metrics.observe_stages(ctx.stages_ms)
        if ctx.span is not None:
            ctx.span.update_name(f"{ctx.method} {route}")
            ctx.span.set_attributes({"http.route": route, "http.response.status_code": status,
                                     **({"fathom.tenant": ctx.tenant} if ctx.tenant else {})})
            ctx.span.end()
        # Probes and scrapes arrive every few seconds: their lines are debug-level so they do not drown the rest.
        level = logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
        ACCESS.log(level, "request", extra={"fields": {
            "method": ctx.method, "route": route, "status": status, "latency_ms": round(seconds * 1000.0, 2),
            **ctx.log_fields}})
