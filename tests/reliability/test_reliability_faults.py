"""Fault injection, one dependency at a time, over real HTTP: what the service answers when something breaks.

Real processes and real failures wherever one exists:

* **Redis** - the private redis-server is SIGKILLed and restarted on the same port (empty: no persistence) under
  a running API: retrieval keeps answering (``cache: "bypassed"``), rate limits fall back to per-process buckets
  (still enforced), job routes answer 503 ``jobs_unavailable``, writes still go through; after the restart the
  cache, the shared limiter and the job queue are used again without restarting the API. An API started while
  Redis is down starts, serves, and picks Redis up when it arrives. (A *frozen* Redis - SIGSTOP, connections
  hang - is covered by tests/api/test_cache.py.)
* **Vector store, server backend** - a runtime configured with ``FATHOM_STORE__BACKEND=server`` and a Qdrant URL
  where nothing listens (connection refused), and one where a socket accepts and never answers (a hung server):
  every route that needs the store answers 503.
* **Vector store, embedded** - tests run as root, so ``chmod 000`` blocks nothing. What can really happen to an
  embedded index is its folder being lost or damaged (volume remounted, folder deleted, files corrupted). The
  test deletes a live shard folder under the running API (the engine keeps serving it from the files it has
  open: the answers stay correct), then restarts the API process's runtime on that disk, with another tenant's
  shard folder replaced by a file and a third tenant intact: the damaged tenants get 503 ``unavailable``, never
  ``ok`` or ``no_relevant_context`` with an empty list; the intact tenant is served.
* **Embedder / reranker** - the only fakes: the real ONNX component wrapped to raise, or to sleep past the
  deadline/budget, then call through.

Every answer goes through :func:`explicit`: a status from the documented set, the HTTP code that goes with it,
never a 500, and never ``ok`` with an empty list or with a stage missing. What the tests observe is collected
into a behaviour matrix, printed at the end of the module (``-s``) and reproduced in the README.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fathom.ingest.ingest_pipeline import IngestItem
from fathom.retrieval.guard import DEGRADING
from fathom.retrieval.rerank.interface import RerankTimeout
from fathom.retrieval.stages import Rerank
from fathom.service.core.config import LimitSettings
from fathom.retrieval.store.contract import IndexRef
from fathom.retrieval.tenancy import Tenant
from fathom.service.app import create_app
from fathom.service.runtime import Runtime
from tests.ops_support import RedisServer, open_seeded_runtime, running_redis
from tests.support import Keys, client, free_port, live_server

BEES = "How do honeybees tell each other where flowers are?"
OCTOPUS = "How does an octopus change colour with chromatophores?"
STATUSES = {"ok", "degraded", "no_relevant_context", "unavailable"}
DEGRADING_CODES = {r.value for r in DEGRADING}
MATRIX: list[dict[str, Any]] = []


@pytest.fixture(scope="module")
def keys() -> Keys:
    k = Keys()
    for name, tenant, role in [("alpha-app", "alpha", "app"), ("alpha-admin", "alpha", "admin"),
                               ("beta-app", "beta", "app"), ("gamma-admin", "gamma", "admin"),
                               ("gamma-app", "gamma", "app"), ("rl-down", "alpha", "app"), ("rl-up", "alpha", "app")]:
        k.add(name, tenant, role)
    return k


@pytest.fixture(scope="module", autouse=True)
def _print_matrix():
    yield
    rows = ["| dependency | fault | HTTP | status | reasons | degraded | cache |", "|---|---|---|---|---|---|---|"]
    for m in MATRIX:
        rows.append(f"| {m['dependency']} | {m['fault']} | {m['http']} | {m['status']} | {m['reasons']} | "
                    f"{m['degraded']} | {m['cache']} |")
    print("\n" + "\n".join(rows))


def roomy(keys: Keys) -> dict[str, Any]:
    """Service settings with a deadline no loaded machine reaches by accident (the deadline test sets its own)."""
    return {"api_keys": keys.json(), "api_keys_file": None, "request_timeout_ms": 30_000.0}


def explicit(r: httpx.Response) -> dict[str, Any]:
    """The answer states what it is: a known status with its HTTP code, never a silent partial ``ok``."""
    assert r.status_code != 500, r.text
    if r.status_code == 504:   # the request deadline passed before any context existed: a problem, by contract
        assert r.headers["content-type"].startswith("application/problem+json")
        return {"status": "-", "code": r.json()["code"], "reasons": [], "degraded": [], "chunks": [], "cache": "-"}
    body = r.json()
    assert body["status"] in STATUSES, body
    assert (r.status_code == 503) == (body["status"] == "unavailable"), (r.status_code, body["status"])
    if body["status"] != "unavailable":
        assert r.status_code == 200
    if body["status"] == "ok":
        assert body["chunks"] and body["degraded"] == [] and not DEGRADING_CODES & set(body["reasons"]), body
    elif body["status"] == "degraded":
        assert body["chunks"] and body["degraded"] and set(body["degraded"]) <= set(body["reasons"]), body
    elif body["status"] == "no_relevant_context":
        assert body["chunks"] == [] and body["reasons"], body
    else:
        assert body["chunks"] == [] and body["reasons"] == ["store_unavailable"] and r.headers["Retry-After"]
    return body


def record(dependency: str, fault: str, r: httpx.Response, body: dict[str, Any]) -> None:
    code = body.get("code")
    MATRIX.append({"dependency": dependency, "fault": fault, "http": r.status_code,
                   "status": f"problem `{code}`" if code else f"`{body['status']}`",
                   "reasons": ", ".join(f"`{x}`" for x in body["reasons"]) or "-",
                   "degraded": ", ".join(f"`{x}`" for x in body["degraded"]) or "-",
                   "cache": f"`{body['cache']}`" if body.get("cache") not in (None, "-") else "-"})


def post(c: httpx.Client, keys: Keys, who: str, query: str, **body: Any) -> httpx.Response:
    return c.post("/v1/retrieve", json={"query": query, **body}, headers=keys.headers(who))


def metric(c: httpx.Client, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(c.get("/metrics").text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


# --- a running API on the sample corpus, its Redis private (it gets killed) ------------------------------------

@pytest.fixture(scope="module")
def redis_proc(tmp_path_factory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("faults-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def runtime(tmp_path_factory, sample_state, base_settings, keys, redis_proc) -> Iterator[Runtime]:
    rt = open_seeded_runtime(sample_state, tmp_path_factory.mktemp("faults"), base_settings, keys,
                             redis_url=redis_proc.url, redis={"retry_after_s": 0.5, "timeout_ms": 250},
                             service=roomy(keys))
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def base_url(runtime) -> Iterator[str]:
    with live_server(create_app(runtime.settings, runtime)) as url:
        yield url


def test_redis_killed_and_restarted_under_a_running_api(base_url, keys, runtime, redis_proc, monkeypatch):
    """SIGKILL, not a clean shutdown: sockets die mid-connection. Nothing the caller needs may depend on Redis."""
    admin = keys.headers("alpha-admin")
    with client(base_url) as c:
        first = explicit(post(c, keys, "alpha-app", BEES))
        assert first["status"] == "ok" and first["cache"] == "miss"
        assert explicit(post(c, keys, "alpha-app", BEES))["cache"] == "hit-exact"
        assert c.get(f"/v1/admin/jobs/{uuid.uuid4().hex}", headers=admin).status_code == 404   # the queue answers

        os.kill(redis_proc.proc.pid, signal.SIGKILL)
        redis_proc.proc.wait(timeout=10)

        for i in range(3):
            t0 = time.monotonic()
            r = post(c, keys, "alpha-app", BEES)
            body = explicit(r)
            assert body["status"] == "ok" and body["cache"] == "bypassed", body
            assert [x["id"] for x in body["chunks"]] == [x["id"] for x in first["chunks"]]   # the same, fresh answer
            assert time.monotonic() - t0 < 5, "a dead Redis must not cost every request a timeout"
            if i == 0:
                record("Redis", "killed (SIGKILL): `/v1/retrieve`", r, body)
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["cache"] == "bypassed"
        assert metric(c, "fathom_cache_state", fathom_cache_state="bypassed") == 1.0
        assert metric(c, "fathom_redis_errors_total") >= 1
        # Rate limits: per-process buckets, still enforced (not dropped) while Redis is gone.
        # Tight buckets for this part (the limiter reads its settings on every request).
        with monkeypatch.context() as m:
            m.setattr(runtime.limiter, "settings", LimitSettings(key_rate=0.01, key_burst=3))
            codes = [post(c, keys, "rl-down", "anything at all").status_code for _ in range(4)]
            assert codes == [200, 200, 200, 429], codes
            limited = post(c, keys, "rl-down", "anything at all")
        assert limited.status_code == 429 and limited.json()["scope"] == "key" and limited.headers["Retry-After"]
        MATRIX.append({"dependency": "Redis", "fault": "killed: rate limits", "http": "200, then 429",
                       "status": "per-process buckets (still enforced)", "reasons": "-", "degraded": "-",
                       "cache": "-"})
        # Job routes: an explicit 503 problem, not a hang and not a 500.
        for method, path in (("GET", f"/v1/admin/jobs/{uuid.uuid4().hex}"), ("POST", "/v1/admin/reindex")):
            r = c.request(method, path, headers=admin)
            assert r.status_code == 503 and r.headers["content-type"].startswith("application/problem+json"), r.text
            assert r.json()["code"] == "jobs_unavailable" and r.headers["Retry-After"]
        MATRIX.append({"dependency": "Redis", "fault": "killed: job routes", "http": 503,
                       "status": "problem `jobs_unavailable`", "reasons": "-", "degraded": "-", "cache": "-"})
        # Writes do not need Redis; the generation bump is deferred and replayed when Redis is back.
        r = c.post("/v1/documents", headers=admin, json={"documents": [{"id": "outage-note", "text": (
            "During the outage the apiary log recorded that honeybees danced longer for distant clover fields.")}]})
        assert r.status_code == 200 and r.json()["documents"][0]["status"] == "ok", r.text
        MATRIX.append({"dependency": "Redis", "fault": "killed: `POST /v1/documents`", "http": 200,
                       "status": "documents `ok`", "reasons": "-", "degraded": "-", "cache": "-"})

        redis_proc.start()   # same port, empty
        time.sleep(0.8)      # > retry_after_s: the breaker lets the next call try Redis again
        again = explicit(post(c, keys, "alpha-app", BEES))
        assert again["status"] == "ok" and again["cache"] == "miss"
        assert explicit(post(c, keys, "alpha-app", BEES))["cache"] == "hit-exact"
        assert c.get("/readyz").json()["checks"]["cache"] == "ok"
        assert metric(c, "fathom_cache_state", fathom_cache_state="ok") == 1.0
        assert int(redis_proc.client().get(runtime.generations.key("alpha"))) >= 1   # the deferred bump replayed
        # The limiter is back on the shared Redis buckets.
        assert post(c, keys, "rl-up", "anything at all").status_code == 200
        assert redis_proc.client().exists("fathom:rl:{alpha}:key:rl-up")
        # And the job queue, without restarting the API.
        assert c.get(f"/v1/admin/jobs/{uuid.uuid4().hex}", headers=admin).json()["code"] == "job_not_found"
        job = c.post("/v1/admin/reindex", headers=admin)
        assert job.status_code == 202, job.text
        deadline = time.monotonic() + 180
        while (state := c.get(f"/v1/admin/jobs/{job.json()['id']}", headers=admin).json())["status"] in (
                "queued", "running"):
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
        assert state["status"] == "succeeded", state
        MATRIX.append({"dependency": "Redis", "fault": "restarted (same port, empty)", "http": 200,
                       "status": "`ok`; jobs 202 -> succeeded", "reasons": "-", "degraded": "-",
                       "cache": "`miss` then `hit-exact`"})


def test_api_started_while_redis_is_down_then_redis_arrives(tmp_path, sample_state, base_settings, keys):
    """A pod restarted during a Redis outage: it must start and serve (bypassed), then pick Redis up on its own."""
    redis = RedisServer(tmp_path / "redis")   # a port chosen, nothing listening on it yet
    rt = open_seeded_runtime(sample_state, tmp_path, base_settings, keys, redis_url=redis.url,
                             redis={"retry_after_s": 0.5, "timeout_ms": 250}, rerank={"kind": "none"},
                             ingest={"embed_mpnet": False}, service=roomy(keys))
    admin = keys.headers("alpha-admin")
    try:
        with live_server(create_app(rt.settings, rt)) as base, client(base) as c:
            r = post(c, keys, "alpha-app", BEES)
            body = explicit(r)
            assert body["status"] == "ok" and body["cache"] == "bypassed"
            record("Redis", "down when the API starts", r, body)
            assert c.get("/readyz").json() == {"status": "ready", "checks": {"models": "ok", "store": "ok",
                                                                              "cache": "bypassed"}}
            r = c.get(f"/v1/admin/jobs/{uuid.uuid4().hex}", headers=admin)
            assert r.status_code == 503 and r.json()["code"] == "jobs_unavailable"
            redis.start()
            time.sleep(0.8)
            assert explicit(post(c, keys, "alpha-app", BEES))["cache"] == "miss"
            assert explicit(post(c, keys, "alpha-app", BEES))["cache"] == "hit-exact"
            assert c.get(f"/v1/admin/jobs/{uuid.uuid4().hex}", headers=admin).json()["code"] == "job_not_found"
            assert c.get("/readyz").json()["checks"]["cache"] == "ok"
            MATRIX.append({"dependency": "Redis", "fault": "down when the API starts, then started", "http": 200,
                           "status": "`ok`; job routes 503 then 404/202", "reasons": "-", "degraded": "-",
                           "cache": "`bypassed`, then `miss`/`hit-exact`"})
    finally:
        rt.close()
        redis.stop()


# --- embedder and reranker: the real ONNX components, wrapped to fail ---------------------------------------------

class Faulty:
    """The real component, except that ``method`` first raises ``error`` or sleeps ``sleep_s`` (then calls through)."""

    def __init__(self, real: Any, method: str, *, error: BaseException | None = None, sleep_s: float = 0.0):
        self._real, self._method, self._error, self._sleep_s = real, method, error, sleep_s

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name != self._method:
            return attr

        def faulty(*args: Any, **kwargs: Any) -> Any:
            if self._error is not None:
                raise self._error
            time.sleep(self._sleep_s)
            return attr(*args, **kwargs)
        return faulty


@pytest.mark.parametrize("mode", ["hybrid", "dense"])
def test_embedder_raising_degrades_to_bm25_flagged(base_url, keys, runtime, monkeypatch, mode):
    """The dense leg is optional: BM25-only results, flagged ``embedder_failed``, never cached (it would outlive
    the fault).

    In ``dense`` mode too: the pipeline falls back to BM25 rather than answering nothing, and says so.
    """
    monkeypatch.setattr(runtime.pipeline, "embedder", Faulty(runtime.pipeline.embedder, "embed_query",
                                                             error=RuntimeError("onnxruntime session crashed")))
    q = f"sourdough starter lactic acid bacteria ({mode})"
    with client(base_url) as c:
        for attempt in range(2):
            r = post(c, keys, "alpha-app", q, mode=mode)
            body = explicit(r)
            assert body["status"] == "degraded" and body["degraded"] == ["embedder_failed"], body
            assert body["cache"] == "miss", "a degraded answer must not be cached"
            assert body["chunks"][0]["document_id"] == "sourdough.html"
            assert all(ch["provenance"]["dense_cosine"] is None for ch in body["chunks"])   # lexical evidence only
            if attempt == 0:
                record("embedder", f"raises, mode `{mode}`", r, body)


def test_embedder_raising_a_timeout_is_embedder_failed(base_url, keys, runtime, monkeypatch):
    """A session that gives up with its own timeout error is a failed embedder like any other: BM25, flagged."""
    monkeypatch.setattr(runtime.pipeline, "embedder", Faulty(runtime.pipeline.embedder, "embed_query",
                                                             error=TimeoutError("inference timed out")))
    with client(base_url) as c:
        r = post(c, keys, "alpha-app", "tidal stream turbines in narrow channels")
    body = explicit(r)
    assert body["status"] == "degraded" and body["reasons"] == ["embedder_failed"]
    record("embedder", "raises its own `TimeoutError`", r, body)


def test_embedder_in_bm25_mode_is_not_needed(base_url, keys, runtime, monkeypatch):
    """``mode: bm25`` never calls the embedder (nor does the cache: no semantic step in that mode): plain ``ok``."""
    monkeypatch.setattr(runtime.pipeline, "embedder", Faulty(runtime.pipeline.embedder, "embed_query",
                                                             error=RuntimeError("onnxruntime session crashed")))
    with client(base_url) as c:
        r = post(c, keys, "alpha-app", "lactic acid bacteria in a sourdough starter", mode="bm25")
    body = explicit(r)
    assert body["status"] == "ok" and body["reasons"] == []
    record("embedder", "raises, mode `bm25`", r, body)


def test_embedder_sleeping_past_the_deadline_is_a_504(base_url, keys, runtime, monkeypatch):
    """Embedding runs before the search: past the request deadline there is no context at all, so a 504 problem
    ``deadline_exceeded`` (documented), not a BM25 answer that would itself arrive after the caller gave up."""
    service = runtime.settings.service.model_copy(update={"request_timeout_ms": 800.0})
    monkeypatch.setattr(runtime, "settings", runtime.settings.model_copy(update={"service": service}))
    monkeypatch.setattr(runtime.pipeline, "embedder", Faulty(runtime.pipeline.embedder, "embed_query", sleep_s=1.0))
    with client(base_url) as c:
        r = post(c, keys, "alpha-app", "printing press movable type metal alloy")
    body = explicit(r)
    assert r.status_code == 504 and body["code"] == "deadline_exceeded"
    record("embedder", "sleeps past the request deadline", r, body)


def _fused_order(body: dict[str, Any]) -> bool:
    ranks = [ch["provenance"]["fused_rank"] for ch in body["chunks"]]
    return ranks == sorted(ranks) and all(ch["provenance"]["rerank_score"] is None for ch in body["chunks"])


def test_reranker_raising_returns_the_fused_order_flagged(base_url, keys, runtime, monkeypatch):
    """Against the healthy answer for the same query: same candidates, fused order, ``reranker_failed``."""
    with client(base_url) as c:
        healthy = explicit(post(c, keys, "alpha-app", OCTOPUS, rerank=True, top_k=8))
        assert healthy["status"] == "ok" and healthy["reranker"] == "mpnet-rescore"
        with monkeypatch.context() as m:
            m.setattr(runtime.pipeline, "reranker", Faulty(runtime.pipeline.reranker, "score",
                                                           error=RuntimeError("reranker session crashed")))
            # The same request again: the answer cached while every stage ran is still a valid ``ok`` answer.
            cached = post(c, keys, "alpha-app", OCTOPUS, rerank=True, top_k=8)
            r = post(c, keys, "alpha-app", OCTOPUS, rerank=True, top_k=7)   # another cache key: the pipeline runs
        hit = explicit(cached)
        assert hit["status"] == "ok" and hit["cache"] == "hit-exact" and hit["chunks"] == healthy["chunks"]
        record("reranker", "raises, an answer cached before the fault exists", cached, hit)
    body = explicit(r)
    assert body["status"] == "degraded" and body["reasons"] == ["reranker_failed"] and body["reranker"] is None
    assert body["cache"] == "miss"
    assert _fused_order(body) and body["chunks"][0]["provenance"]["fused_rank"] == 0
    assert body["chunks"][0]["document_id"] == "octopus.html"
    record("reranker", "raises", r, body)


def test_reranker_over_its_budget_returns_the_fused_order_flagged(base_url, keys, runtime, monkeypatch):
    """A reranker that overruns ``rerank.budget_ms`` (sleeps, then scores): its late scores are discarded."""
    rerank = runtime.pipeline.stage(Rerank)
    monkeypatch.setattr(rerank, "settings", rerank.settings.model_copy(update={"budget_ms": 200.0}))
    monkeypatch.setattr(runtime.pipeline, "reranker", Faulty(runtime.pipeline.reranker, "score", sleep_s=0.5))
    with client(base_url) as c:
        r = post(c, keys, "alpha-app", "Voyager radioisotope thermoelectric generators", rerank=True)
    body = explicit(r)
    assert body["status"] == "degraded" and body["reasons"] == ["reranker_timeout"] and body["reranker"] is None
    assert _fused_order(body) and body["cache"] == "miss"
    record("reranker", "sleeps past `rerank.budget_ms`", r, body)


def test_reranker_raising_its_own_timeout(base_url, keys, runtime, monkeypatch):
    """A reranker that checks its deadline and gives up (RerankTimeout) is a timeout, not a failure."""
    monkeypatch.setattr(runtime.pipeline, "reranker", Faulty(runtime.pipeline.reranker, "score",
                                                             error=RerankTimeout("budget spent")))
    with client(base_url) as c:
        r = post(c, keys, "alpha-app", "coffee roasting first crack", rerank=True)
    body = explicit(r)
    assert body["status"] == "degraded" and body["degraded"] == ["reranker_timeout"] and _fused_order(body)
    record("reranker", "raises `RerankTimeout`", r, body)


# --- the vector store, server backend: nothing listening, or a server that never answers ----------------------

class Blackhole:
    """A TCP port that accepts connections and never answers (a hung server, not a refused one)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                continue

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=5)
        for s in [*self.conns, self.sock]:
            s.close()


@pytest.mark.parametrize("fault", ["refused", "hung"])
def test_server_store_unreachable_is_503_on_every_route_that_needs_it(tmp_path, base_settings, models_ready, keys,
                                                                     fault):
    """``FATHOM_STORE__BACKEND=server`` (qdrant-client) with the Qdrant address refusing or never answering."""
    hole = Blackhole() if fault == "hung" else None
    url = f"http://127.0.0.1:{hole.port if hole else free_port()}"
    s = base_settings
    rt = Runtime.open(s.model_copy(update={
        "state_dir": tmp_path / "state", "registry_url": None,
        "store": s.store.model_copy(update={"backend": "server", "url": url, "timeout_s": 1.0, "retries": 1}),
        "service": s.service.model_copy(update=roomy(keys)),
        "rerank": s.rerank.model_copy(update={"kind": "none"}),
        "ingest": s.ingest.model_copy(update={"embed_mpnet": False}),
    }))
    try:
        with live_server(create_app(rt.settings, rt)) as base, client(base) as c:
            t0 = time.monotonic()
            r = post(c, keys, "gamma-app", BEES)
            elapsed = time.monotonic() - t0
            body = explicit(r)
            assert body["status"] == "unavailable" and body["reasons"] == ["store_unavailable"]
            assert elapsed < 15, elapsed
            what = "connection refused" if hole is None else "hung (accepts, never answers)"
            record("vector store (server)", f"{what}: `/v1/retrieve` ({elapsed:.1f} s)", r, body)
            ready = c.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["store"].startswith("unavailable")
            admin = keys.headers("gamma-admin")
            r = c.post("/v1/documents", headers=admin, json={"documents": [{"id": "d1", "text": BEES * 3}]})
            assert r.status_code == 503 and r.json()["code"] == "store_unavailable", r.text
            r = c.delete("/v1/documents/d1", headers=admin)
            assert r.status_code == 503 and r.json()["code"] == "store_unavailable", r.text
            if hole is None:
                MATRIX.append({"dependency": "vector store (server)", "fault": "refused: `/readyz`, documents",
                               "http": 503, "status": "`not_ready`; problem `store_unavailable`", "reasons": "-",
                               "degraded": "-", "cache": "-"})
    finally:
        rt.close()
        if hole:
            hole.close()


# --- the embedded store: a live shard folder lost or damaged ----------------------------------------------------

def test_embedded_store_losing_its_shard_folders(tmp_path, sample_state, base_settings, keys):
    """Deleted under the running API: still served (correctly) from the open files. After a restart on that disk:
    503 for the tenants whose shard is gone or replaced by a file, never an empty ``ok``/``no_relevant_context``."""
    # No answer cache: every request below must reach the store. (mpnet stays loaded: the seeded indexes hold
    # mpnet vectors, and writing to them needs it.)
    light = {"rerank": {"kind": "none"}, "cache": {"enabled": False}, "service": roomy(keys)}
    rt = open_seeded_runtime(sample_state, tmp_path, base_settings, keys, **light)
    edge = rt.settings.state_path / "edge"
    try:
        rt.ingest.ingest(Tenant("gamma"), [IngestItem(
            document_id="hives.txt", filename="hives.txt",
            text="Honeybees tell each other where flowers are with the waggle dance inside the hive.")])
        with live_server(create_app(rt.settings, rt)) as base, client(base) as c:
            before = explicit(post(c, keys, "alpha-app", BEES))
            assert before["status"] == "ok"
            shutil.rmtree(edge / "alpha" / "v1")
            during = explicit(post(c, keys, "alpha-app", BEES))
            assert during["status"] == "ok"
            assert [x["id"] for x in during["chunks"]] == [x["id"] for x in before["chunks"]]
            MATRIX.append({"dependency": "vector store (edge)", "fault": "live shard folder deleted under the running "
                           "API", "http": 200, "status": "`ok` (served from the open shard; the data is correct)",
                           "reasons": "-", "degraded": "-", "cache": "`off`"})
    finally:
        rt.close()
    shutil.rmtree(edge / "beta" / "v1")
    (edge / "beta" / "v1").write_text("not a shard")
    rt = Runtime.open(rt.settings)   # the restart: a fresh runtime on the same disk
    try:
        with live_server(create_app(rt.settings, rt)) as base, client(base) as c:
            for who, fault in (("alpha-app", "live shard folder missing (after a restart)"),
                               ("beta-app", "live shard folder replaced by a file (after a restart)")):
                for mode in ("hybrid", "bm25"):
                    r = post(c, keys, who, BEES, mode=mode)
                    body = explicit(r)
                    assert body["status"] == "unavailable" and body["reasons"] == ["store_unavailable"], body
                    assert str(edge) not in r.text, "a server path in the answer"
                record("vector store (edge)", fault, r, body)
            r = c.post("/v1/documents", headers=keys.headers("alpha-admin"),
                       json={"documents": [{"id": "n1", "text": "Bees and the waggle dance, noted again today."}]})
            assert r.status_code == 503 and r.json()["code"] == "store_unavailable", r.text
            r = c.delete("/v1/documents/honeybees.md", headers=keys.headers("alpha-admin"))
            assert r.status_code == 503 and r.json()["code"] == "store_unavailable", r.text
            intact = explicit(post(c, keys, "gamma-app", BEES))
            assert intact["status"] == "ok" and intact["chunks"][0]["document_id"] == "hives.txt"
    finally:
        rt.close()


def test_ingest_into_an_index_this_deployment_cannot_write_is_409_and_writes_nothing(tmp_path, sample_state,
                                                                                      base_settings, keys):
    """The seeded indexes hold mpnet vectors; a process started without mpnet cannot write them. That is a
    deployment mismatch with a fix (load the model, or reindex): 409 ``index_layout_mismatch``, not a 500."""
    rt = open_seeded_runtime(sample_state, tmp_path, base_settings, keys, rerank={"kind": "none"},
                             ingest={"embed_mpnet": False}, service=roomy(keys))
    try:
        alpha = Tenant("alpha")
        live = IndexRef(alpha, rt.store.live_version(alpha))
        before = (rt.registry.counts(alpha), rt.store.count(live))
        with live_server(create_app(rt.settings, rt)) as base, client(base) as c:
            r = c.post("/v1/documents", headers=keys.headers("alpha-admin"),
                       json={"documents": [{"id": "new-doc", "text": OCTOPUS * 5}]})
            assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json"), r.text
            assert r.json()["code"] == "index_layout_mismatch" and "FATHOM_INGEST__EMBED_MPNET" in r.json()["detail"]
            assert explicit(post(c, keys, "alpha-app", OCTOPUS))["status"] in ("ok", "no_relevant_context")
        assert rt.registry.get(alpha, "new-doc") is None                      # nothing half-written
        assert (rt.registry.counts(alpha), rt.store.count(live)) == before
    finally:
        rt.close()
