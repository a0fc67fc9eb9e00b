"""The answer cache on its Redis path, over real HTTP, with real models and a private redis-server.

Exact and semantic hits, invalidation by ingest and delete (the tenant's write
generation), tenant isolation, only ``ok`` answers cached, and Redis failing
mid-test: stopped (connections refused) and frozen (connections hang, data
survives, so a write made during the outage must still invalidate afterwards).
"""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fathom.ingest.ingest_pipeline import IngestItem
from fathom.retrieval.tenancy import Tenant
from fathom.service.app import create_app
from tests.ops_support import RedisServer, open_seeded_runtime
from tests.support import Keys, client, live_server

BEES = "How do honeybees tell each other where flowers are?"
BEES_PARAPHRASE = "How do honeybees tell each other where the flowers are?"   # MiniLM cosine 0.992
WASPS = "How do wasps tell each other where flowers are?"                     # cosine 0.80: another question
NO_LIMITS = {"enabled": False}


@pytest.fixture(scope="module")
def keys() -> Keys:
    k = Keys()
    k.add("alpha-app", "alpha", "app")
    k.add("beta-app", "beta", "app")
    return k


@pytest.fixture(scope="module")
def redis_db(redis_server: RedisServer) -> RedisServer:
    redis_server.client().flushall()
    return redis_server


@pytest.fixture(scope="module")
def runtime(tmp_path_factory, sample_state, base_settings, keys, redis_db):
    rt = open_seeded_runtime(sample_state, tmp_path_factory.mktemp("cache"), base_settings, keys,
                             redis_url=redis_db.url, limits=NO_LIMITS)
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def base_url(runtime):
    with live_server(create_app(runtime.settings, runtime)) as url:
        yield url


def ask(base_url: str, keys: Keys, who: str, query: str, **body):
    with client(base_url) as c:
        r = c.post("/v1/retrieve", json={"query": query, **body}, headers=keys.headers(who))
    assert r.status_code == 200, r.text
    return r.json()


def ids(body) -> list[str]:
    return [c["id"] for c in body["chunks"]]


def test_second_identical_query_is_an_exact_hit(base_url, keys, runtime):
    first = ask(base_url, keys, "alpha-app", "What is the waggle dance?", top_k=3)
    assert first["status"] == "ok" and first["cache"] == "miss" and "search" in first["timings_ms"]
    second = ask(base_url, keys, "alpha-app", "  What is the   waggle dance? ", top_k=3)   # whitespace is normalised
    assert second["cache"] == "hit-exact"
    assert ids(second) == ids(first) and second["confidence"] == first["confidence"]
    assert "search" not in second["timings_ms"] and "cache" in second["timings_ms"]
    assert second["request_id"] != first["request_id"]
    # Parameters that shape the answer are part of the key.
    assert ask(base_url, keys, "alpha-app", "What is the waggle dance?", top_k=2)["cache"] == "miss"
    # The entry lives in Redis (this process has no other cache), under the tenant's hash tag.
    assert runtime.answer_cache.store.backend == "redis"
    assert any(k.startswith(b"fathom:ans:{alpha}:") for k in runtime.redis.client.scan_iter("fathom:ans:*"))


def test_paraphrase_is_a_semantic_hit_and_another_question_is_not(base_url, keys):
    assert ask(base_url, keys, "alpha-app", BEES)["cache"] == "miss"
    para = ask(base_url, keys, "alpha-app", BEES_PARAPHRASE)
    assert para["cache"] == "hit-semantic" and para["chunks"][0]["document_id"] == "honeybees.md"
    other = ask(base_url, keys, "alpha-app", WASPS)
    assert other["cache"] == "miss"
    # BM25 answers the words, not the meaning: no semantic step in that mode.
    assert ask(base_url, keys, "alpha-app", BEES, mode="bm25")["cache"] == "miss"
    assert ask(base_url, keys, "alpha-app", BEES_PARAPHRASE, mode="bm25")["cache"] == "miss"


def test_ingest_and_delete_in_the_tenant_make_the_next_query_a_miss(base_url, keys, runtime):
    q = "How long does a sourdough starter take to become active?"
    assert ask(base_url, keys, "alpha-app", q)["cache"] == "miss"
    assert ask(base_url, keys, "alpha-app", q)["cache"] == "hit-exact"
    gen_key = runtime.generations.key("alpha")
    before = int(runtime.redis.client.get(gen_key) or 0)
    runtime.ingest.ingest(Tenant("alpha"), [IngestItem(
        document_id="starter-notes.txt", filename="starter-notes.txt",
        text="A new sourdough starter usually becomes active after five to seven days of daily feeding.")])
    assert int(runtime.redis.client.get(gen_key)) > before
    after_ingest = ask(base_url, keys, "alpha-app", q)
    assert after_ingest["cache"] == "miss"
    assert ask(base_url, keys, "alpha-app", q)["cache"] == "hit-exact"
    assert runtime.ingest.delete(Tenant("alpha"), "starter-notes.txt")
    after_delete = ask(base_url, keys, "alpha-app", q)
    assert after_delete["cache"] == "miss"
    assert "starter-notes.txt" not in {c["document_id"] for c in after_delete["chunks"]}
    # Another tenant's writes leave alpha's entries alone.
    runtime.generations.bump(Tenant("beta"))
    assert ask(base_url, keys, "alpha-app", q)["cache"] == "hit-exact"


def test_a_tenant_never_receives_another_tenants_cached_answer(base_url, keys):
    # Both tenants hold the same corpus, so the answers look alike, but chunk ids carry the tenant.
    q = "What does the octopus use its chromatophores for?"
    alpha = ask(base_url, keys, "alpha-app", q)
    assert ask(base_url, keys, "alpha-app", q)["cache"] == "hit-exact"
    beta = ask(base_url, keys, "beta-app", q)
    assert beta["cache"] == "miss" and beta["status"] == "ok"
    assert not set(ids(beta)) & set(ids(alpha))
    assert ask(base_url, keys, "beta-app", q)["cache"] == "hit-exact"
    # Nor through the semantic step: the paraphrase hits within alpha, and misses for beta.
    alpha_bees = ask(base_url, keys, "alpha-app", BEES)
    assert ask(base_url, keys, "alpha-app", BEES_PARAPHRASE)["cache"] == "hit-semantic"
    beta_para = ask(base_url, keys, "beta-app", BEES_PARAPHRASE)
    assert beta_para["cache"] == "miss" and not set(ids(beta_para)) & set(ids(alpha_bees))


def test_only_ok_answers_are_cached(base_url, keys):
    off_topic = "What is a good recipe for chocolate chip cookies with walnuts?"
    first = ask(base_url, keys, "alpha-app", off_topic)
    assert first["status"] == "no_relevant_context"
    assert ask(base_url, keys, "alpha-app", off_topic)["cache"] == "miss"


def metric(base_url: str, name: str, **labels: str) -> float:
    with client(base_url) as c:
        text = c.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def test_redis_stopped_mid_test_retrieval_keeps_answering_bypassed(tmp_path, sample_state, base_settings, keys):
    server = RedisServer(tmp_path / "redis").start()
    rt = open_seeded_runtime(sample_state, tmp_path, base_settings, keys, redis_url=server.url,
                             limits={"key_rate": 1000, "tenant_rate": 1000}, redis={"retry_after_s": 0.5})
    try:
        with live_server(create_app(rt.settings, rt)) as url:
            assert ask(url, keys, "alpha-app", BEES)["cache"] == "miss"
            assert ask(url, keys, "alpha-app", BEES)["cache"] == "hit-exact"
            with client(url) as c:
                assert c.get("/readyz").json()["checks"]["cache"] == "ok"
            server.stop()
            for _ in range(3):
                body = ask(url, keys, "alpha-app", BEES)      # rate limits fall back in-process too
                assert body["status"] == "ok" and body["cache"] == "bypassed" and body["chunks"]
            with client(url) as c:
                ready = c.get("/readyz")
            assert ready.status_code == 200 and ready.json()["checks"]["cache"] == "bypassed"
            assert metric(url, "fathom_cache_state", fathom_cache_state="bypassed") == 1.0
            assert metric(url, "fathom_cache_lookups_total", result="bypassed") >= 3
            assert metric(url, "fathom_redis_errors_total") >= 1
            # Redis comes back (empty: no persistence): after the retry delay the cache works again.
            server.start()
            time.sleep(0.6)
            assert ask(url, keys, "alpha-app", BEES)["cache"] == "miss"
            assert ask(url, keys, "alpha-app", BEES)["cache"] == "hit-exact"
            with client(url) as c:
                assert c.get("/readyz").json()["checks"]["cache"] == "ok"
    finally:
        rt.close()
        server.stop()


def test_a_write_during_a_redis_freeze_still_invalidates_when_it_thaws(tmp_path, sample_state, base_settings, keys):
    """Frozen, not stopped: the old entries survive the outage, so the deferred generation bump must be replayed."""
    server = RedisServer(tmp_path / "redis").start()
    # A retry delay longer than the write, so the bump finds Redis bypassed and must be deferred.
    rt = open_seeded_runtime(sample_state, tmp_path, base_settings, keys, redis_url=server.url, limits=NO_LIMITS,
                             redis={"timeout_ms": 200, "retry_after_s": 3.0})
    try:
        with live_server(create_app(rt.settings, rt)) as url:
            ask(url, keys, "alpha-app", BEES)
            assert ask(url, keys, "alpha-app", BEES)["cache"] == "hit-exact"
            gen_key = rt.generations.key("alpha")
            gen0 = int(server.client().get(gen_key) or 0)
            server.pause()
            t0 = time.monotonic()
            assert ask(url, keys, "alpha-app", BEES)["cache"] == "bypassed"
            assert time.monotonic() - t0 < 5
            rt.ingest.ingest(Tenant("alpha"), [IngestItem(document_id="pilot.txt", filename="pilot.txt", text=(
                "The graphene membrane pilot plant in Rotterdam desalinates seawater for the harbour district."))])
            assert time.monotonic() - t0 < 3.0, "the write outlasted the retry delay: the bump was not deferred"
            server.resume()
            time.sleep(3.1)
            # The entry cached before the write is still in Redis, but the replayed bump moved the tenant on.
            assert ask(url, keys, "alpha-app", BEES)["cache"] == "miss"
            assert int(server.client().get(gen_key)) == gen0 + 1
            assert ask(url, keys, "alpha-app", BEES)["cache"] == "hit-exact"
    finally:
        server.resume()
        rt.close()
        server.stop()
