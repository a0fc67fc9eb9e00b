"""Admission control over real HTTP: token buckets in a private Redis, body size limits, the request deadline.

Rate-limit tests use tenants with nothing indexed: their answers are instant
(``no_relevant_context``), so bucket arithmetic does not depend on how loaded
the machine is. The deadline tests inject one fault: a store whose search is
slower than the whole request deadline.
"""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fathom.service.core.config import LimitSettings
from fathom.retrieval.tenancy import Tenant
from fathom.service.app import create_app
from fathom.service.limits import RateLimiter
from fathom.service.redis_link import RedisLink
from tests.ops_support import RedisServer, open_seeded_runtime
from tests.support import Keys, client, free_port, live_server

LIMITS = {"key_rate": 0.5, "key_burst": 3, "tenant_rate": 0.5, "tenant_burst": 4}


@pytest.fixture(scope="module")
def keys() -> Keys:
    k = Keys()
    k.add("gamma-1", "gamma", "app")
    k.add("delta-1", "delta", "app")
    k.add("delta-2", "delta", "app")
    k.add("alpha-504", "alpha", "app")
    k.add("alpha-slow", "alpha", "app")
    return k


@pytest.fixture(scope="module")
def runtime(tmp_path_factory, sample_state, base_settings, keys, redis_server: RedisServer):
    redis_server.client().flushall()
    rt = open_seeded_runtime(sample_state, tmp_path_factory.mktemp("limits"), base_settings, keys,
                             redis_url=redis_server.url, limits=LIMITS)
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def base_url(runtime):
    with live_server(create_app(runtime.settings, runtime)) as url:
        yield url


def post(base_url: str, keys: Keys, who: str, query: str = "anything") -> httpx.Response:
    with client(base_url) as c:
        return c.post("/v1/retrieve", json={"query": query}, headers=keys.headers(who))


def test_key_bucket_empties_into_429_with_retry_after_and_refills(base_url, keys):
    assert [post(base_url, keys, "gamma-1").status_code for _ in range(3)] == [200, 200, 200]
    r = post(base_url, keys, "gamma-1")
    assert r.status_code == 429 and r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == "rate_limited" and body["scope"] == "key" and body["retry_after_ms"] > 0
    wait = int(r.headers["Retry-After"])
    assert 1 <= wait <= 2          # one token at 0.5/s, rounded up to whole seconds
    time.sleep(wait)
    assert post(base_url, keys, "gamma-1").status_code == 200


def test_tenant_bucket_is_shared_by_the_tenants_keys(base_url, keys):
    assert [post(base_url, keys, "delta-1").status_code for _ in range(3)] == [200, 200, 200]
    assert post(base_url, keys, "delta-2").status_code == 200      # the tenant's 4th: its bucket is now empty
    r = post(base_url, keys, "delta-2")                              # delta-2's own bucket still has 2
    assert r.status_code == 429 and r.json()["scope"] == "tenant" and r.headers["Retry-After"]
    with client(base_url) as c:
        families = {f.name: f for f in text_string_to_metric_families(c.get("/metrics").text)}
    refused = {(s.labels["tenant"], s.labels["scope"]): s.value for s in families["fathom_rate_limited"].samples
               if s.name == "fathom_rate_limited_total"}
    assert refused[("delta", "tenant")] == 1


def test_buckets_are_shared_by_processes_through_redis(redis_server: RedisServer):
    settings = LimitSettings(key_rate=0.1, key_burst=2, tenant_rate=100, tenant_burst=100)
    links = [RedisLink(redis_server.url, timeout_ms=500, retry_after_s=1) for _ in range(2)]
    a, b = (RateLimiter(settings, prefix="shared-test", link=link) for link in links)
    tenant = Tenant("epsilon")
    assert a.admit("k", tenant).allowed and b.admit("k", tenant).allowed
    refused = a.admit("k", tenant)
    assert not refused.allowed and refused.scope == "key" and 0 < refused.retry_after_s <= 10
    assert b.admit("other-key", tenant).allowed     # buckets are per key
    for link in links:
        link.close()


def test_limits_fall_back_in_process_while_redis_is_down():
    link = RedisLink(f"redis://127.0.0.1:{free_port()}/0", timeout_ms=200, retry_after_s=30)
    limiter = RateLimiter(LimitSettings(key_rate=0.1, key_burst=2), prefix="fathom", link=link)
    outcomes = [limiter.admit("k", Tenant("zeta")).allowed for _ in range(3)]
    assert outcomes == [True, True, False] and not link.healthy
    link.close()


def test_oversized_bodies_are_413_problems(base_url, keys):
    huge = {"query": "x" * 70_000}
    with client(base_url) as c:
        r = c.post("/v1/retrieve", json=huge, headers=keys.headers("alpha-504"))
        assert r.status_code == 413 and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "payload_too_large" and r.json()["limit_bytes"] == 64 * 1024
        # Without a Content-Length (chunked), the body is counted as it streams.
        chunks = iter([b'{"query": "', b"y" * 40_000, b"y" * 40_000, b'"}'])
        r = c.post("/v1/retrieve", content=chunks, headers=keys.headers("alpha-504", **{"Content-Type": "application/json"}))
        assert r.status_code == 413 and r.json()["code"] == "payload_too_large"


def test_a_tiny_deadline_is_a_504_problem(base_url, keys, runtime, monkeypatch):
    service = runtime.settings.service.model_copy(update={"request_timeout_ms": 1.0})
    monkeypatch.setattr(runtime, "settings", runtime.settings.model_copy(update={"service": service}))
    r = post(base_url, keys, "alpha-504", "How do tidal stream turbines work?")
    assert r.status_code == 504 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "deadline_exceeded"


class _SlowSearch:
    """The real store, except that search takes longer than the request's whole deadline."""

    def __init__(self, store, delay_s: float):  # type: ignore[no-untyped-def]
        self._store, self._delay_s = store, delay_s

    def search(self, request):  # type: ignore[no-untyped-def]
        time.sleep(self._delay_s)
        return self._store.search(request)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._store, name)


def test_deadline_passing_during_search_skips_the_reranker_degraded(base_url, keys, runtime, monkeypatch):
    service = runtime.settings.service.model_copy(update={"request_timeout_ms": 1000.0})
    monkeypatch.setattr(runtime, "settings", runtime.settings.model_copy(update={"service": service}))
    monkeypatch.setattr(runtime.pipeline, "store", _SlowSearch(runtime.pipeline.store, 1.2))
    for _ in range(2):   # degraded answers are not cached: the second one runs the pipeline again
        r = post(base_url, keys, "alpha-slow", "How does Gutenberg's printing press use movable type?")
        assert r.status_code == 200
        body = r.json()
        # The reranker is skipped; the judge starts past the deadline too, so confidence is the dense-cosine one.
        assert body["status"] == "degraded" and body["reasons"] == ["deadline_exceeded", "judge_timeout"]
        assert body["degraded"] == ["deadline_exceeded", "judge_timeout"]
        assert body["reranker"] is None and body["cache"] == "miss"
        assert body["chunks"] and all(c["provenance"]["rerank_score"] is None for c in body["chunks"])
