"""Request dependencies: the runtime, the authenticated caller with the tenant it acts on, and admission.

Authentication (``authenticate``) and rate limiting (``rate_limit``) are separate steps; the dependencies
routes declare (``app_caller``, ``admin_caller``, ``admin_or_every_tenant``) chain the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from fathom.retrieval.tenancy import Tenant
from fathom.service.auth import TENANT_HEADER, AuthError, Principal, Role
from fathom.service.limits import retry_after_header
from fathom.service.observability.context import current as request_context
from fathom.service.observability.context import stage as observed_stage
from fathom.service.problems import Problem
from fathom.service.runtime import Runtime


async def runtime(request: Request) -> Runtime:
    """Async on purpose: FastAPI runs a sync dependency in the thread pool, a hop this attribute read does not need."""
    return request.app.state.runtime


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    tenant: Tenant


def _api_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def authenticate(request: Request, role: Role) -> Caller:
    """The caller behind the request's API key and the tenant it acts on (401/403/400 problems otherwise)."""
    rt: Runtime = request.app.state.runtime
    with observed_stage("auth"):
        try:
            principal, tenant = rt.keys.authenticate(_api_key(request), request.headers.get(TENANT_HEADER))
        except AuthError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            raise Problem(exc.status, exc.code, exc.message, headers=headers) from None
        if not principal.allows(role):
            raise Problem(403, "forbidden_role", f"this key's role ({principal.role}) cannot do this; needs {role}")
    request.state.tenant = tenant.id
    ctx = request_context()
    if ctx is not None:
        ctx.tenant = tenant.id
    return Caller(principal, tenant)


def rate_limit(request: Request, caller: Caller) -> Caller:
    """Token buckets per API key and per tenant: 429 with ``Retry-After`` once a bucket is empty."""
    rt: Runtime = request.app.state.runtime
    if rt.limiter is None:
        return caller
    with observed_stage("ratelimit"):
        admission = rt.limiter.admit(caller.principal.key_id, caller.tenant)
    if admission.allowed:
        return caller
    rt.metrics.rate_limited.labels(caller.tenant.id, admission.scope).inc()
    limit = rt.settings.limits
    rate, burst = (limit.key_rate, limit.key_burst) if admission.scope == "key" else (limit.tenant_rate, limit.tenant_burst)
    raise Problem(429, "rate_limited", "Rate limit exceeded",
                  f"the {admission.scope} allows {rate:g} requests/s (bursts of {burst}); retry later",
                  headers={"Retry-After": retry_after_header(admission.retry_after_s)},
                  scope=admission.scope, retry_after_ms=round(admission.retry_after_s * 1000))


# Identities: authentication only. Async on purpose: a key lookup is a hash and a stat() (no I/O wait), so it needs
# no thread-pool hop; the rate limiter may wait on Redis, so the dependencies that admit are sync (thread pool).
async def app_identity(request: Request) -> Caller:
    return authenticate(request, Role.APP)


async def admin_identity(request: Request) -> Caller:
    return authenticate(request, Role.ADMIN)


async def admin_or_operator_identity(request: Request) -> Caller | None:
    """An admin caller, or None for an operator key that names no tenant (routes that report on every tenant)."""
    if request.headers.get(TENANT_HEADER) is None:
        principal = request.app.state.runtime.keys.lookup(_api_key(request) or "")
        if principal is not None and principal.role is Role.OPERATOR:
            return None
    return authenticate(request, Role.ADMIN)


# What routes declare: an identity, then admission by the rate limiter (its own dependency in the chain).
def app_caller(request: Request, caller: Annotated[Caller, Depends(app_identity)]) -> Caller:
    return rate_limit(request, caller)


def admin_caller(request: Request, caller: Annotated[Caller, Depends(admin_identity)]) -> Caller:
    return rate_limit(request, caller)


def admin_or_every_tenant(request: Request,
                          caller: Annotated[Caller | None, Depends(admin_or_operator_identity)]) -> Caller | None:
    """An admitted admin caller, or None for an operator acting on every tenant (not rate limited per tenant)."""
    return rate_limit(request, caller) if caller is not None else None
