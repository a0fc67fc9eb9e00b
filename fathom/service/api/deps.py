"""Request dependencies: the runtime, and the authenticated caller with the tenant it acts on."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

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
    admit(rt, principal, tenant)
    return Caller(principal, tenant)


def admit(rt: Runtime, principal: Principal, tenant: Tenant) -> None:
    """Rate limits per API key and per tenant: 429 with ``Retry-After`` once a bucket is empty."""
    if rt.limiter is None:
        return
    with observed_stage("ratelimit"):
        admission = rt.limiter.admit(principal.key_id, tenant)
    if admission.allowed:
        return
    rt.metrics.rate_limited.labels(tenant.id, admission.scope).inc()
    limit = rt.settings.limits
    rate, burst = (limit.key_rate, limit.key_burst) if admission.scope == "key" else (limit.tenant_rate, limit.tenant_burst)
    raise Problem(429, "rate_limited", "Rate limit exceeded",
                  f"the {admission.scope} allows {rate:g} requests/s (bursts of {burst}); retry later",
                  headers={"Retry-After": retry_after_header(admission.retry_after_s)},
                  scope=admission.scope, retry_after_ms=round(admission.retry_after_s * 1000))


def app_caller(request: Request) -> Caller:
    return authenticate(request, Role.APP)


def admin_caller(request: Request) -> Caller:
    return authenticate(request, Role.ADMIN)


def admin_or_every_tenant(request: Request) -> Caller | None:
    """An admin caller, or None for an operator key that names no tenant: routes that can report on every tenant."""
    if request.headers.get(TENANT_HEADER) is None:
        principal = request.app.state.runtime.keys.lookup(_api_key(request) or "")
        if principal is not None and principal.role is Role.OPERATOR:
            return None
    return admin_caller(request)
