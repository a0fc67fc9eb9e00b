"""RFC 9457 problem details: one error format for every non-2xx answer except retrieval outcomes.

Every problem carries a stable ``code`` (machine-readable, never renamed) in
addition to the RFC members ``type``, ``title``, ``status`` and ``detail``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_BASE = "https://fathom.dev/problems/"
TOO_DEEP = "the JSON is nested too deeply to parse (no request needs more than a few levels)"
MEDIA_TYPE = "application/problem+json"

_STATUS_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
                 422: "validation_error", 429: "rate_limited", 500: "internal_error", 503: "unavailable",
                 504: "deadline_exceeded"}


class ProblemDetails(BaseModel):
    """The body of every error answer (``application/problem+json``), for the OpenAPI document.

    Problems may carry more members (``errors`` for validation, ``limit_bytes``, ``retry_after_ms``, ...).
    """

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "type": PROBLEM_BASE + "validation_error", "title": "Request validation failed", "status": 422,
        "code": "validation_error", "detail": "body.query: String should have at most 2000 characters",
        "instance": "/v1/retrieve",
        "errors": [{"loc": ["body", "query"], "msg": "String should have at most 2000 characters",
                    "type": "string_too_long"}]}]})

    type: str = Field(description=f"{PROBLEM_BASE}<code>")
    title: str
    status: int = Field(ge=400, le=599, description="The HTTP status, repeated")
    code: str = Field(description="Stable machine-readable code (never renamed)")
    detail: str | None = None
    instance: str | None = Field(None, description="The request path")


_DESCRIPTIONS = {400: "Malformed request: not JSON, or an operator key without a valid X-Fathom-Tenant",
                 401: "Missing or unknown API key", 403: "The key's role or tenant does not allow this",
                 413: "The request body is over the route's limit", 422: "Request validation failed",
                 429: "Rate limit exceeded (Retry-After says when to come back)"}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for problems (served as application/problem+json, see fathom.service.api.openapi)."""
    return {s: {"model": ProblemDetails, "description": _DESCRIPTIONS.get(s, "Problem")} for s in statuses}


class Problem(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(self, status: int, code: str, title: str, detail: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail or title)
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.headers = headers or {}
        self.extra = extra


def problem_response(status: int, code: str, title: str, detail: str | None = None, instance: str | None = None,
                     headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_BASE + code, "title": title, "status": status, "code": code}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.code, exc.title, exc.detail, request.url.path, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
        if errors and all(e["type"] == "json_invalid" for e in errors):
            # A body that is not JSON at all is a 400 on every route (as /v1/documents, which parses its own body).
            first = exc.errors()[0]
            return problem_response(400, "invalid_json", "The body is not valid JSON",
                                    f"{(first.get('ctx') or {}).get('error', 'JSON decode error')} "
                                    f"at position {list(first.get('loc', ()))[-1]}", request.url.path)
        return problem_response(422, "validation_error", "Request validation failed",
                                "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors),
                                request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
            # FastAPI's "error parsing the body" for JSON nested past the parser's recursion limit.
            return problem_response(400, "invalid_json", "The body is not valid JSON", TOO_DEEP, request.url.path)
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI's "error parsing the body" for bytes that are not UTF-8: say which, in the JSON problem.
            return problem_response(400, "invalid_json", "The body is not valid JSON",
                                    f"the body is not valid UTF-8 ({exc.__cause__.reason} at byte {exc.__cause__.start})",
                                    request.url.path)
        code = _STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return problem_response(exc.status_code, code, code.replace("_", " ").capitalize(),
                                str(exc.detail) if exc.detail else None, request.url.path, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        # Never leak internals (or another tenant's data) through error text.
        return problem_response(500, "internal_error", "Internal error", "the error was logged", request.url.path)
