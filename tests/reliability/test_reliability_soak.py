"""Soak: steady mixed load on a real ``fathom serve`` process; no errors, no memory growth, no fd leak.

The server runs as a subprocess (so ``/proc/<pid>`` gives its RSS and open
file descriptors) with a private redis-server (answer cache, rate-limit
buckets and the job queue live there, as in production), the embedded store,
real models. ``CONCURRENCY`` client threads keep it busy for the whole run:
mostly retrieves across three tenants and all three modes, one admin upload a
second that replaces documents (the tenant's size stays bounded, the write path and
cache invalidation are exercised), and exactly one reindex job, started after
the warm-up and run to its swap under that load.

Duration: ``FATHOM_SOAK_SECONDS`` (default 60 s, the CI form). The long form
(600 s) is the same test marked ``soak_long``, deselected by default: run it
with ``pytest -m soak_long tests/reliability/test_reliability_soak.py``. Figures are
printed and written to ``benchmarks/results/soak.json``.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from fathom.benchmarks.datasets import load_beir
from fathom.service.cli import SAMPLE_CORPUS
from tests.ops_support import RedisServer
from tests.reliability_support import REPO, ServerProcess, server_env
from tests.support import Keys

TENANTS = ("soak-a", "soak-b", "soak-c")
REINDEX_TENANT = TENANTS[0]
CONCURRENCY = 4
SEED_DOCS = 40                  # SciFact abstracts per tenant, besides the 8 sample files
ROTATING_IDS = 8                # uploads during the soak replace these ids: the corpus stays bounded
# Uploads at a fixed overall rate (2 documents each, replacing earlier ones): the write volume, and with it the
# growth of the live shards (replaced chunks stay in a segment until it is optimised), then depends on the run's
# duration, not on how fast this machine happens to be; retrieves take the rest of the capacity.
INGEST_INTERVAL_S = 1.0
# Memory: after the warm-up the process holds its models, onnxruntime arenas and the tenants' shards; what may
# still legitimately grow is the second index version the reindex builds (a few MB for ~56 documents) and
# allocator high-water marks under concurrency. 150 MB is about a third of the process; a leak of 10 KB per request
# exceeds it within the long form (~20k requests), and a per-request leak of 100 KB+ within the short form.
RSS_GROWTH_BOUND = 150 * 2**20
# In the long form the second half must be flat: allocators plateau, leaks do not.
RSS_SECOND_HALF_BOUND = 50 * 2**20
# File descriptors: the reindex legitimately opens the new version's shard files (counted separately); besides
# those, a few keep-alive sockets may come and go (CONCURRENCY clients, the job poller, Redis pools).
FD_SLACK = 12
# The request deadline answers 504 (deadline_exceeded) to a retrieve that waited past it before its search: load
# shedding, tested in test_limits.py. On this shared 2-core machine (load average 7-9 from other engineers' suites
# during the first 10-minute run, which got 2 such 504s in 7,633 retrieves at the default 2 s) that measures the
# neighbours, not leaks or faults, so the soak allows 10 s: any 5xx left is an error.
DEADLINE_MS = 10_000
OFF_TOPIC = ["What is the capital of Mongolia?", "Best recipe for lemon drizzle cake",
             "Who won the 1966 football world cup?", "How do I renew my passport online?"]
SAMPLE_QUERIES = ["How do honeybees tell each other where flowers are?", "tidal stream turbines in narrow channels",
                  "octopus camouflage chromatophores", "when did Voyager leave the heliosphere?",
                  "how long should a sourdough starter ferment?", "roasting coffee beans first crack"]
RESULTS = REPO / "benchmarks" / "results" / "soak.json"
VALID_STATUS = {"ok", "degraded", "no_relevant_context"}


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys().add_tenants(TENANTS)


@pytest.fixture(scope="module")
def scifact(scifact_dir) -> dict[str, Any]:
    ds = load_beir(scifact_dir)
    docs = [{"id": f"sf-{d.id}", "title": d.title, "text": f"{d.title}\n\n{d.text}"}
            for d, _ in zip((d for d in ds.corpus() if len(d.text) > 300), range(SEED_DOCS + 400))]
    return {"seed": docs[:SEED_DOCS], "updates": docs[SEED_DOCS:], "queries": list(ds.queries.values())[:60]}


class Load:
    """The soak's client side: CONCURRENCY threads, each with its own keep-alive client, until ``deadline``."""

    def __init__(self, url: str, keys: Keys, scifact: dict[str, Any], seed: int):
        self.url, self.keys, self.scifact = url, keys, scifact
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.caches: Counter[str] = Counter()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.versions: dict[int, list[int]] = defaultdict(list)   # per thread: index versions seen by REINDEX_TENANT
        self.uploads = 0
        self.next_ingest = 0.0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(CONCURRENCY)]
        titles = [d["title"] for d in scifact["seed"]]
        self.queries = titles + scifact["queries"] + SAMPLE_QUERIES + OFF_TOPIC

    def start(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)

    def error(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)

    def _run(self, n: int) -> None:
        rng = random.Random(n)
        with httpx.Client(base_url=self.url, timeout=60) as c:
            while not self.stop.is_set():
                tenant = rng.choice(TENANTS)
                try:
                    if self._ingest_due():
                        self._ingest(c, tenant)
                    else:
                        self._retrieve(c, n, tenant, rng)
                except httpx.TransportError as exc:
                    self.error(f"transport: {type(exc).__name__}: {exc}")

    def _ingest_due(self) -> bool:
        now = time.monotonic()
        with self.lock:
            if now < self.next_ingest:
                return False
            self.next_ingest = now + INGEST_INTERVAL_S
            return True

    def _retrieve(self, c: httpx.Client, n: int, tenant: str, rng: random.Random) -> None:
        body = {"query": rng.choice(self.queries), "top_k": rng.choice((3, 5, 10)),
                "mode": rng.choices(("hybrid", "bm25", "dense"), (8, 1, 1))[0]}
        t0 = time.perf_counter()
        r = c.post("/v1/retrieve", json=body, headers=self.keys.headers(f"{tenant}-app"))
        elapsed = time.perf_counter() - t0
        with self.lock:
            self.requests["retrieve"] += 1
            self.latency["retrieve"].append(elapsed)
        if r.status_code != 200:
            self.error(f"retrieve {r.status_code}: {r.text[:300]}")
            return
        answer = r.json()
        status, chunks = answer.get("status"), answer.get("chunks")
        consistent = status in VALID_STATUS and isinstance(chunks, list) and \
            (len(chunks) == 0) == (status == "no_relevant_context") and isinstance(answer.get("index_version"), int)
        if not consistent:
            self.error(f"retrieve: invalid answer {json.dumps(answer)[:300]}")
            return
        with self.lock:
            self.statuses[status] += 1
            self.caches[answer.get("cache", "?")] += 1
            if tenant == REINDEX_TENANT:
                self.versions[n].append(answer["index_version"])

    def _ingest(self, c: httpx.Client, tenant: str) -> None:
        with self.lock:
            k = self.uploads
            self.uploads += 1
        updates = self.scifact["updates"]
        docs = [{**updates[(k * 2 + j) % len(updates)], "id": f"rot-{(k * 2 + j) % ROTATING_IDS}"} for j in range(2)]
        if docs[0]["id"] == docs[1]["id"]:
            docs = docs[:1]
        t0 = time.perf_counter()
        r = c.post("/v1/documents", json={"documents": docs}, headers=self.keys.headers(f"{tenant}-admin"))
        elapsed = time.perf_counter() - t0
        with self.lock:
            self.requests["ingest"] += 1
            self.latency["ingest"].append(elapsed)
        if r.status_code != 200 or r.json()["summary"]["failed"]:
            self.error(f"ingest {r.status_code}: {r.text[:300]}")


def seed(url: str, keys: Keys, scifact: dict[str, Any]) -> None:
    files = [("files", (p.name, p.read_bytes())) for p in sorted(SAMPLE_CORPUS.iterdir())]
    with httpx.Client(base_url=url, timeout=600) as c:
        for t in TENANTS:
            admin = keys.headers(f"{t}-admin")
            r = c.post("/v1/documents", files=files, headers=admin)
            assert r.status_code == 200, r.text
            r = c.post("/v1/documents", json={"documents": scifact["seed"]}, headers=admin)
            assert r.status_code == 200, r.text


def store_fds(fds: list[str], state: Path, tenant: str, version: int) -> int:
    prefix = str(state / "edge" / tenant / f"v{version}") + "/"
    return sum(1 for f in fds if f.startswith(prefix))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def run_soak(tmp_path: Path, keys: Keys, scifact: dict[str, Any], duration_s: float, form: str) -> dict[str, Any]:
    redis = RedisServer(tmp_path / "redis").start()
    state = tmp_path / "state"
    env = server_env(state, keys, redis_url=redis.url, FATHOM_JOBS__KEY_PREFIX="soak",
                     FATHOM_LIMITS__KEY_RATE="100000", FATHOM_LIMITS__KEY_BURST="100000",
                     FATHOM_LIMITS__TENANT_RATE="100000", FATHOM_LIMITS__TENANT_BURST="100000",
                     FATHOM_SERVICE__REQUEST_TIMEOUT_MS=str(DEADLINE_MS))
    server = ServerProcess(env, tmp_path / "server.log").start()
    warmup_s = min(30.0, max(10.0, duration_s * 0.1))
    reindex: dict[str, Any] = {}
    rss_samples: list[tuple[float, int]] = []
    try:
        seed(server.url, keys, scifact)
        load = Load(server.url, keys, scifact, seed=7).start()
        time.sleep(warmup_s)
        rss_start, fds_start = server.rss_bytes(), server.fds()
        requests_start = sum(load.requests.values())
        t_start = time.monotonic()
        deadline = t_start + duration_s

        def reindex_job() -> None:
            """Exactly one reindex, 10 % into the measured window, polled until it ends."""
            time.sleep(duration_s * 0.1)
            admin = keys.headers(f"{REINDEX_TENANT}-admin")
            with httpx.Client(base_url=server.url, timeout=60) as c:
                t0 = time.monotonic()
                r = c.post("/v1/admin/reindex", headers=admin)
                if r.status_code != 202:
                    load.error(f"reindex {r.status_code}: {r.text[:300]}")
                    return
                job_id = r.json()["id"]
                while True:
                    r = c.get(f"/v1/admin/jobs/{job_id}", headers=admin)
                    with load.lock:
                        load.requests["job_status"] += 1
                    if r.status_code != 200:
                        load.error(f"job status {r.status_code}: {r.text[:300]}")
                        return
                    job = r.json()
                    if job["status"] not in ("queued", "running"):
                        reindex.update(status=job["status"], seconds=round(time.monotonic() - t0, 1),
                                       result=job["result"], error=job["error"], counts=job["counts"])
                        return
                    time.sleep(0.5)

        poller = threading.Thread(target=reindex_job, daemon=True)
        poller.start()
        while time.monotonic() < deadline:
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
            rss_samples.append((time.monotonic() - t_start, server.rss_bytes()))
        poller.join(timeout=300)        # a reindex still running at the deadline finishes under no load
        rss_end, fds_end = server.rss_bytes(), server.fds()
        elapsed = time.monotonic() - t_start
        load.finish()
        requests_measured = sum(load.requests.values()) - requests_start
    finally:
        rc = server.stop()
        redis.stop()

    live = (reindex.get("result") or {}).get("new_version")
    new_version_fds = store_fds(fds_end, state, REINDEX_TENANT, live) if live else 0
    half = [rss for t, rss in rss_samples if t >= duration_s / 2]
    lat = {kind: {"p50_ms": round(percentile(v, 0.5) * 1000, 1), "p95_ms": round(percentile(v, 0.95) * 1000, 1),
                  "mean_ms": round(statistics.fmean(v) * 1000, 1)} for kind, v in load.latency.items() if v}
    figures = {
        "form": form, "duration_s": round(elapsed, 1), "warmup_s": warmup_s, "concurrency": CONCURRENCY,
        "tenants": len(TENANTS), "requests": dict(load.requests), "requests_total": sum(load.requests.values()),
        "rps_measured": round(requests_measured / elapsed, 1), "errors": len(load.errors),
        "error_samples": load.errors[:10], "retrieve_status": dict(load.statuses), "cache": dict(load.caches),
        "latency": lat, "reindex": reindex,
        "rss_mb": {"start": round(rss_start / 2**20, 1), "end": round(rss_end / 2**20, 1),
                   "growth": round((rss_end - rss_start) / 2**20, 1),
                   "second_half_growth": round((half[-1] - half[0]) / 2**20, 1) if len(half) > 1 else None,
                   "samples": [(round(t), round(r / 2**20, 1)) for t, r in rss_samples]},
        "fds": {"start": len(fds_start), "end": len(fds_end), "new_version_files": new_version_fds,
                "deleted_files_open": sum(1 for f in fds_end if f.endswith("(deleted)")),
                "sockets": [sum(1 for f in fds_start if f.startswith("socket:")),
                            sum(1 for f in fds_end if f.startswith("socket:"))]},
        "server_exit_code": rc,
        # per client thread, the index versions REINDEX_TENANT's answers came from: never back to an older one
        "versions_monotonic": all(v == sorted(v) for v in load.versions.values()),
        "versions_seen": sorted({x for v in load.versions.values() for x in v}),
    }
    print("\nsoak figures:\n" + json.dumps({k: v for k, v in figures.items() if k != "rss_mb"}, indent=1)
          + f"\nrss_mb: {figures['rss_mb']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    RESULTS.write_text(json.dumps({**previous, form: figures}, indent=2))
    return figures


def check(figures: dict[str, Any], duration_s: float) -> None:
    assert figures["errors"] == 0, figures["error_samples"]
    assert figures["server_exit_code"] in (0, -15)    # a clean shutdown (uvicorn re-raises the SIGTERM it handled)
    assert figures["requests"].get("ingest", 0) >= 1 and figures["requests"]["retrieve"] >= 10 * duration_s / 60
    assert figures["retrieve_status"].get("ok", 0) > 0 and figures["retrieve_status"].get("no_relevant_context", 0) > 0
    assert figures["reindex"].get("status") == "succeeded", figures["reindex"]
    assert figures["reindex"]["result"]["new_version"] == 2
    assert figures["versions_monotonic"] and figures["versions_seen"] == [1, 2], figures["versions_seen"]
    rss = figures["rss_mb"]
    assert rss["growth"] * 2**20 <= RSS_GROWTH_BOUND, rss
    if duration_s >= 300 and rss["second_half_growth"] is not None:
        assert rss["second_half_growth"] * 2**20 <= RSS_SECOND_HALF_BOUND, rss
    fds = figures["fds"]
    assert fds["deleted_files_open"] == 0, fds         # a handle on a dropped shard or segment
    assert fds["end"] <= fds["start"] + fds["new_version_files"] + FD_SLACK, fds


def test_soak(tmp_path, keys, scifact, models_ready):
    """The CI form: FATHOM_SOAK_SECONDS (default 60 s) of mixed load with one reindex; see the module docstring."""
    duration = float(os.environ.get("FATHOM_SOAK_SECONDS", "60"))
    check(run_soak(tmp_path, keys, scifact, duration, "short"), duration)


@pytest.mark.soak_long
def test_soak_long(tmp_path, keys, scifact, models_ready):
    """The long form: 10 minutes (FATHOM_SOAK_LONG_SECONDS), where slow leaks have time to show."""
    duration = float(os.environ.get("FATHOM_SOAK_LONG_SECONDS", "600"))
    check(run_soak(tmp_path, keys, scifact, duration, "long"), duration)
