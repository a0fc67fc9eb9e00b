"""/v1/retrieve over real HTTP: real models, real Edge shards, real documents.

Covers tenant isolation (including a query made of another tenant's exact
text), every guard status triggered for real, and the problem+json errors.
Faults are injected only where something must fail: a failing embedder or
reranker object, a microscopic time budget for the real reranker, and a
Qdrant server address where nothing listens.
"""

from __future__ import annotations

import itertools
import pytest

from fathom.benchmarks.datasets import load_beir
from fathom.ingest.ingest_pipeline import IngestItem
from fathom.config import RerankSettings
from fathom.retrieval.stages import Rerank
from fathom.retrieval.store.server_store import ServerStore
from fathom.retrieval.tenancy import Tenant
from fathom.service.app import create_app
from fathom.service.cli import SAMPLE_CORPUS, ingest_paths
from fathom.service.runtime import Runtime
from tests.support import Keys, client, free_port, live_server

SECRET = ("Project Nightjar's internal launch codename for the graphene desalination membrane is BLUE HERON, "
          "shipping to the Rotterdam pilot plant in week 14.")


@pytest.fixture(scope="module")
def keys() -> Keys:
    k = Keys()
    k.add("alpha-app", "alpha", "app")
    k.add("beta-app", "beta", "app")
    k.add("sci-app", "sci", "app")
    k.add("empty-app", "gamma", "app")
    k.add("operator", None, "operator")
    return k


@pytest.fixture(scope="module")
def runtime(tmp_path_factory, base_settings, models_ready, scifact_dir, keys):
    state = tmp_path_factory.mktemp("state")
    settings = base_settings.model_copy(update={
        "state_dir": state, "registry_url": None,
        "service": base_settings.service.model_copy(update={"api_keys": keys.json(), "api_keys_file": None}),
        # A budget no loaded CI machine can overrun by accident; the overrun test sets its own. The mpnet reranker
        # (not the default) because these tests check what a reranked answer carries.
        "rerank": base_settings.rerank.model_copy(update={"budget_ms": 5000.0, "kind": "mpnet"}),
        "ingest": base_settings.ingest.model_copy(update={"embed_mpnet": True}),
        "judge": base_settings.judge.model_copy(update={"budget_ms": 5000.0}),
    })
    rt = Runtime.open(settings)
    ingest_paths(rt, "alpha", [SAMPLE_CORPUS], {"corpus": "sample"}, quiet=True)
    rt.ingest.ingest(Tenant("beta"), [IngestItem(document_id="nightjar", text=SECRET, filename="nightjar.txt")])
    docs = list(itertools.islice(load_beir(scifact_dir).corpus(), 150))
    rt.ingest.ingest(Tenant("sci"), [IngestItem(document_id=d.id, parsed=d.parsed()) for d in docs])
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def base_url(runtime):
    with live_server(create_app(runtime.settings, runtime)) as url:
        yield url


def retrieve(base_url: str, keys: Keys, who: str, query: str, **body):
    with client(base_url) as c:
        return c.post("/v1/retrieve", json={"query": query, **body}, headers=keys.headers(who))


def test_ok_with_chunks_metadata_and_timings(base_url, keys):
    r = retrieve(base_url, keys, "alpha-app", "How do honeybees tell each other where flowers are?", top_k=3)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["chunks"] and body["reasons"] == []
    top = body["chunks"][0]
    assert top["document_id"] == "honeybees.md" and "waggle" in top["text"].lower()
    assert top["metadata"]["filetype"] == "text/markdown" and top["metadata"]["tags"] == {"corpus": "sample"}
    assert "Communication" in top["metadata"]["section"]
    assert top["provenance"]["index_version"] == 1 and top["provenance"]["fused_rank"] >= 0
    assert body["reranker"] == "mpnet-rescore"
    assert {"embed", "search", "rerank", "guard", "total"} <= set(body["timings_ms"])
    assert 0 < body["confidence"] <= 1 and r.headers["X-Request-ID"] == body["request_id"]


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_modes_and_filters(base_url, keys, mode):
    r = retrieve(base_url, keys, "alpha-app", "tidal stream turbines in narrow channels", mode=mode,
                 filters={"filetype": "text/plain"})
    body = r.json()
    assert body["status"] == "ok"
    assert {c["metadata"]["filetype"] for c in body["chunks"]} == {"text/plain"}
    assert body["chunks"][0]["document_id"] == "tidal_power.txt"


def test_tenant_never_sees_another_tenants_chunks_even_with_their_exact_text(base_url, keys):
    r = retrieve(base_url, keys, "alpha-app", SECRET, top_k=20)
    assert r.status_code == 200
    body = r.json()
    assert "nightjar" not in {c["document_id"] for c in body["chunks"]}
    assert all("Nightjar" not in c["text"] for c in body["chunks"])
    # The owner does see it, so the query itself is a hit.
    own = retrieve(base_url, keys, "beta-app", SECRET).json()
    assert own["status"] == "ok" and own["chunks"][0]["document_id"] == "nightjar"


def test_tenant_cannot_be_chosen_in_the_body_or_header(base_url, keys):
    with client(base_url) as c:
        r = c.post("/v1/retrieve", json={"query": "bees", "tenant": "beta"}, headers=keys.headers("alpha-app"))
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "validation_error"
        r = c.post("/v1/retrieve", json={"query": "bees"}, headers=keys.headers("alpha-app", **{"X-Fathom-Tenant": "beta"}))
        assert r.status_code == 403 and r.json()["code"] == "forbidden_tenant"
        # An operator acts on the tenant it names, and only through the header.
        r = c.post("/v1/retrieve", json={"query": SECRET}, headers=keys.headers("operator", **{"X-Fathom-Tenant": "beta"}))
        assert r.json()["chunks"][0]["document_id"] == "nightjar"


def test_auth_and_validation_problems(base_url):
    with client(base_url) as c:
        r = c.post("/v1/retrieve", json={"query": "bees"})
        assert r.status_code == 401 and r.json()["code"] == "unauthenticated" and r.json()["status"] == 401
        r = c.post("/v1/retrieve", json={"query": "bees"}, headers={"Authorization": "Bearer fth_nope"})
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"


def test_bad_requests_get_problem_json(base_url, keys):
    cases = [({"query": "   "}, "validation_error"), ({"query": "x", "top_k": 0}, "validation_error"),
             ({"query": "x", "mode": "fuzzy"}, "validation_error"),
             ({"query": "x", "filters": {"tenant_id": "beta"}}, "invalid_filter")]
    with client(base_url) as c:
        for body, code in cases:
            r = c.post("/v1/retrieve", json=body, headers=keys.headers("alpha-app"))
            assert r.status_code == 422, body
            assert r.json()["code"] == code and r.json()["type"].endswith(code)


def test_empty_tenant_is_no_relevant_context(base_url, keys):
    body = retrieve(base_url, keys, "empty-app", "anything at all").json()
    assert body["status"] == "no_relevant_context" and body["chunks"] == []
    assert body["reasons"] == ["empty_index"] and body["confidence"] == 0


@pytest.mark.parametrize("query", ["What is a good recipe for chocolate chip cookies?",
                                   "Who won the football world cup final in 1998?",
                                   "How do I configure a VLAN trunk port on a Cisco switch?"])
def test_off_topic_query_over_a_real_corpus_is_no_relevant_context(base_url, keys, query):
    body = retrieve(base_url, keys, "sci-app", query).json()
    assert body["status"] == "no_relevant_context", body["confidence"]
    assert body["chunks"] == [] and set(body["reasons"]) & {"low_confidence", "below_relevance_threshold"}


def test_on_topic_scientific_query_is_ok(base_url, keys, scifact_dir):
    ds = load_beir(scifact_dir)
    first_ids = {d.id for d in itertools.islice(ds.corpus(), 150)}
    qid = next(q for q, rel in sorted(ds.qrels.items()) if set(rel) & first_ids)
    body = retrieve(base_url, keys, "sci-app", ds.queries[qid], top_k=10).json()
    assert body["status"] == "ok"
    assert set(ds.qrels[qid]) & {c["document_id"] for c in body["chunks"]}


class _Failing:
    def embed_query(self, text):
        raise RuntimeError("embedder session crashed")

    name = "failing"
    needs_vectors = ()

    def score(self, *a, **k):
        raise RuntimeError("reranker session crashed")

    def confidence(self, s):
        return 0.0


def test_embedder_failure_degrades_to_bm25(base_url, keys, runtime, monkeypatch):
    monkeypatch.setattr(runtime.pipeline, "embedder", _Failing())
    body = retrieve(base_url, keys, "alpha-app", "sourdough starter lactic acid bacteria").json()
    assert body["status"] == "degraded" and "embedder_failed" in body["reasons"]
    assert body["degraded"] == ["embedder_failed"]
    assert body["chunks"][0]["document_id"] == "sourdough.html"
    assert body["chunks"][0]["provenance"]["dense_cosine"] is None


def test_reranker_failure_returns_fused_order_flagged(base_url, keys, runtime, monkeypatch):
    monkeypatch.setattr(runtime.pipeline, "reranker", _Failing())
    body = retrieve(base_url, keys, "alpha-app", "octopus camouflage chromatophores").json()
    assert body["status"] == "degraded" and body["reasons"] == ["reranker_failed"]
    assert body["reranker"] is None and [c["provenance"]["fused_rank"] for c in body["chunks"]] == sorted(
        c["provenance"]["fused_rank"] for c in body["chunks"])


def test_reranker_over_budget_returns_fused_order_flagged(base_url, keys, runtime, monkeypatch):
    monkeypatch.setattr(runtime.pipeline.stage(Rerank), "settings", RerankSettings(depth=50, budget_ms=0.01))
    body = retrieve(base_url, keys, "alpha-app", "Voyager radioisotope generators").json()
    assert body["status"] == "degraded" and body["reasons"] == ["reranker_timeout"]
    assert body["chunks"] and all(c["provenance"]["rerank_score"] is None for c in body["chunks"])


def test_store_down_is_503_unavailable(base_url, keys, runtime, monkeypatch):
    dead = ServerStore.from_url(f"http://127.0.0.1:{free_port()}", timeout_s=1)
    monkeypatch.setattr(runtime.pipeline, "store", dead)
    r = retrieve(base_url, keys, "alpha-app", "bees")
    assert r.status_code == 503 and r.headers["Retry-After"]
    body = r.json()
    assert body["status"] == "unavailable" and body["reasons"] == ["store_unavailable"] and body["chunks"] == []


def test_health_and_readiness(base_url):
    with client(base_url) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["store"] == "ok"
