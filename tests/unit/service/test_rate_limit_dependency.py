"""Authentication and rate limiting as two chained request dependencies (fathom/service/api/deps.py).

A small FastAPI app with the real key store, rate limiter (in-process buckets), metrics and problem
handlers: what the route-level dependencies do in which order, without models or a store.
The same over the full service and Redis: tests/api/test_limits.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from fathom.service import problems
from fathom.service.api.deps import Caller, admin_or_every_tenant, app_caller
from fathom.service.auth import KeyStore
from fathom.service.core.config import LimitSettings, Settings
from fathom.service.limits import RateLimiter
from fathom.service.observability.metrics import Metrics
from tests.support import Keys


@pytest.fixture
def keys() -> Keys:
    k = Keys()
    k.add("app", "acme", "app")
    k.add("other", "acme", "app")
    k.add("op", None, "operator")
    return k


@pytest.fixture
def http(keys: Keys) -> TestClient:
    limits = LimitSettings(key_rate=0.001, key_burst=2, tenant_rate=0.001, tenant_burst=3)
    settings = Settings().model_copy(update={"limits": limits})
    app = FastAPI()
    problems.install(app)
    app.state.runtime = SimpleNamespace(settings=settings, keys=KeyStore(env_json=keys.json()), metrics=Metrics(),
                                        limiter=RateLimiter(limits, prefix="t"))

    @app.get("/app")
    def for_apps(caller: Annotated[Caller, Depends(app_caller)]) -> dict[str, str]:
        return {"tenant": caller.tenant.id}

    @app.get("/report")
    def for_admins(caller: Annotated[Caller | None, Depends(admin_or_every_tenant)]) -> dict[str, str | None]:
        return {"tenant": caller.tenant.id if caller else None}

    return TestClient(app)


def test_a_refused_key_takes_no_token(http: TestClient, keys: Keys) -> None:
    for _ in range(5):
        assert http.get("/app", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert [http.get("/app", headers=keys.headers("app")).status_code for _ in range(3)] == [200, 200, 429]


def test_an_empty_bucket_is_a_429_problem_with_retry_after_and_counted(http: TestClient, keys: Keys) -> None:
    statuses = [http.get("/app", headers=keys.headers(who)) for who in ("app", "app", "other", "other")]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]      # the tenant's bucket (3) is shared
    refused = statuses[-1]
    assert refused.headers["content-type"].startswith("application/problem+json") and refused.headers["Retry-After"]
    assert refused.json()["code"] == "rate_limited" and refused.json()["scope"] == "tenant"
    metrics = http.app.state.runtime.metrics  # type: ignore[attr-defined]
    families = {f.name: f for f in text_string_to_metric_families(metrics.render("off").decode())}
    counted = {(s.labels["tenant"], s.labels["scope"]): s.value for s in families["fathom_rate_limited"].samples
               if s.name == "fathom_rate_limited_total"}
    assert counted == {("acme", "tenant"): 1.0}


def test_an_operator_reporting_on_every_tenant_is_not_limited_per_tenant(http: TestClient, keys: Keys) -> None:
    assert all(http.get("/report", headers=keys.headers("op")).json() == {"tenant": None} for _ in range(5))
    named = [http.get("/report", headers=keys.headers("op", **{"X-Fathom-Tenant": "acme"})).status_code
             for _ in range(3)]
    assert named == [200, 200, 429]          # naming a tenant makes it an admin caller of that tenant: admitted
