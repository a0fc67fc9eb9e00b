"""Durability: the process that writes is SIGKILLed mid-write, restarted on the same state, and audited.

With the embedded (edge) store, the default, the API server is the process
that writes: it runs ingestion batches (``POST /v1/documents``, in its thread
pool) and reindex jobs (its consumer thread; ``fathom worker`` is only for the
server backend, and its SIGKILL is covered by test_jobs_redis.py). So the
server runs here as a real ``fathom serve`` subprocess and is killed with
SIGKILL once it has provably written part of the work:

* mid-ingest: the second upload request is in flight and the registry (read
  from outside, SQLite) already holds some but not all of its documents;
* mid-reindex: the job reports a finished build batch of the new version.

A fresh server on the same state folder (and the same Redis for job records)
must then serve the old live version or the complete new one, report the job
as failed with a reason, and hold every acknowledged document exactly once;
re-running the interrupted work must complete it idempotently. The final
audit opens the store and registry after a clean shutdown and checks every
chunk: one document version per document, chunk indexes 0..n-1 once each,
chunk count and content hash equal to the registry's, which equals the hash
recomputed from the source text.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest

from fathom.benchmarks.datasets import load_beir
from tests.ops_support import RedisServer
from tests.reliability_support import ServerProcess, audit, manifest, registry_ok, server_env, source_hash
from tests.support import Keys, client

TENANT = "dur"
FIRST, SECOND = 40, 60          # documents acknowledged before the kill / in the request that is killed
PREFIX = "durability"           # Redis key prefix of this module's job system
# Every query reaches the index (an answer cached before the kill would hide what is live), and polling is not
# rate limited, nor shed by the 2 s request deadline when other suites load this shared 2-core machine.
NO_CACHE_NO_LIMITS = {"FATHOM_CACHE__ENABLED": "false", "FATHOM_LIMITS__ENABLED": "false",
                      "FATHOM_SERVICE__REQUEST_TIMEOUT_MS": "30000"}
# A batch is recorded in the registry in one transaction, so the killed request must span several batches for the
# kill to land between them (some of its batches recorded, one written or being written, the rest not started).
SMALL_BATCHES = {"FATHOM_INGEST__BATCH_DOCUMENTS": "8"}


@pytest.fixture(scope="module")
def keys() -> Keys:
    k = Keys()
    k.add("admin", TENANT, "admin")
    k.add("app", TENANT, "app")
    return k


@pytest.fixture(scope="module")
def documents(scifact_dir) -> list[dict[str, str]]:
    """100 SciFact abstracts with some substance (the second batch must take a while to register)."""
    docs = []
    for d in load_beir(scifact_dir).corpus():
        if len(d.text) > 600:
            docs.append({"id": f"scifact-{d.id}", "title": d.title, "text": f"{d.title}\n\n{d.text}"})
        if len(docs) == FIRST + SECOND:
            return docs
    raise AssertionError("not enough SciFact documents")


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("durability-redis")).start()
    yield server
    server.stop()


def overview(c: httpx.Client, keys: Keys) -> dict[str, Any]:
    r = c.get("/v1/admin/index", headers=keys.headers("admin"))
    assert r.status_code == 200, r.text
    (tenant,) = r.json()["tenants"]
    return tenant


def registered(c: httpx.Client, keys: Keys) -> dict[str, dict[str, Any]]:
    r = c.get("/v1/documents", params={"limit": 500}, headers=keys.headers("admin"))
    assert r.status_code == 200 and r.json()["next_cursor"] is None, r.text
    return {d["id"]: d for d in r.json()["documents"]}


def assert_live_consistent(c: httpx.Client, keys: Keys, expected_ids: set[str], live: int) -> dict[str, Any]:
    """Through the API: the live version is ``live``, holds exactly the registered chunks, and answers ``ok``."""
    index = overview(c, keys)
    docs = registered(c, keys)
    assert index["live_version"] == live, index
    assert [v["version"] for v in index["versions"] if v["state"] == "building"] == [], index
    assert set(docs) == expected_ids and all(d["status"] == "ok" for d in docs.values())
    points = {v["version"]: v["points"] for v in index["versions"]}
    # A chunk in the live version that the registry does not account for is a document the client was never told
    # about (or a second copy of one): the count must match exactly.
    assert points[live] == sum(d["chunk_count"] for d in docs.values()), (points, len(docs))
    return index


def retrieve_ok(c: httpx.Client, keys: Keys, documents: list[dict[str, str]], version: int) -> None:
    for doc in documents[:3]:
        r = c.post("/v1/retrieve", json={"query": doc["title"], "top_k": 5}, headers=keys.headers("app"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "ok" and body["index_version"] == version, body
        assert doc["id"] in [ch["document_id"] for ch in body["chunks"]], [ch["document_id"] for ch in body["chunks"]]


def assert_exactly_once(state, documents: list[dict[str, str]], version: int, config_key: str, *,
                        same_chunking: bool = True) -> None:
    """Audit the stopped state: every document once, as the registry records it, hashed as its source."""
    result = audit(state, TENANT, version)
    assert result.problems(chunk_counts_from_registry=same_chunking) == []
    assert set(result.registry) == {d["id"] for d in documents}
    for doc in documents:
        assert result.registry[doc["id"]].content_hash == source_hash(doc, config_key), doc["id"]


def test_sigkill_mid_ingest_batch_then_restart_and_resend(tmp_path, keys, documents, models_ready):
    """Kill the server while it registers the documents of an upload; the restart must show no trace of the
    unacknowledged part (beyond what the registry recorded), and resending the request must complete it."""
    state = tmp_path / "state"
    env = server_env(state, keys, **NO_CACHE_NO_LIMITS, **SMALL_BATCHES)
    first, second = documents[:FIRST], documents[FIRST:]
    admin = keys.headers("admin")

    s1 = ServerProcess(env, tmp_path / "s1.log").start()
    outcome: dict[str, Any] = {}
    try:
        with client(s1.url) as c:
            r = c.post("/v1/documents", json={"documents": first}, headers=admin)
            assert r.status_code == 200 and r.json()["summary"] == {"ok": FIRST, "unchanged": 0, "failed": 0}
            config_key = overview(c, keys)["versions"][0]["layout"]["build"]["chunker"]

        def send() -> None:
            try:
                with httpx.Client(base_url=s1.url, timeout=600) as c2:
                    outcome["response"] = c2.post("/v1/documents", json={"documents": second}, headers=admin)
            except httpx.TransportError as exc:
                outcome["error"] = exc

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        deadline = time.monotonic() + 300
        while True:
            n = registry_ok(state, TENANT)
            if FIRST < n < FIRST + SECOND:
                s1.kill()       # the batch is provably half-recorded
                break
            assert n < FIRST + SECOND and sender.is_alive(), f"the upload finished before the kill ({n}, {outcome})"
            assert time.monotonic() < deadline, "the second upload never started registering documents"
            time.sleep(0.001)
        sender.join(timeout=60)
    finally:
        s1.kill()
    assert "error" in outcome and "response" not in outcome, outcome     # never acknowledged
    recorded = registry_ok(state, TENANT)
    assert FIRST < recorded < FIRST + SECOND
    assert manifest(state, TENANT)["live"] == 1
    print(f"\nSIGKILL mid-upload: {recorded - FIRST} of {SECOND} documents of the request were registered")

    s2 = ServerProcess(env, tmp_path / "s2.log").start()
    try:
        with client(s2.url) as c:
            before = registered(c, keys)
            assert {d["id"] for d in first} <= set(before)   # acknowledged: all there
            assert len(before) == recorded
            index = assert_live_consistent(c, keys, set(before), live=1)
            print(f"after restart: live v{index['live_version']}, {len(before)} documents, "
                  f"{index['versions'][0]['points']} chunks")
            retrieve_ok(c, keys, first, version=1)

            # Resending the interrupted request completes it: what was recorded is unchanged, the rest is new.
            r = c.post("/v1/documents", json={"documents": second}, headers=admin)
            assert r.status_code == 200, r.text
            statuses = {o["id"]: o["status"] for o in r.json()["documents"]}
            assert {i for i, s in statuses.items() if s == "unchanged"} == set(before) - {d["id"] for d in first}
            assert {i for i, s in statuses.items() if s == "ok"} == {d["id"] for d in second} - set(before)
            assert_live_consistent(c, keys, {d["id"] for d in documents}, live=1)
            retrieve_ok(c, keys, second, version=1)
            # And once more: nothing changes (idempotent).
            r = c.post("/v1/documents", json={"documents": second}, headers=admin)
            assert r.json()["summary"] == {"ok": 0, "unchanged": SECOND, "failed": 0}
    finally:
        assert s2.stop() in (0, -15), s2.tail()   # uvicorn re-raises the SIGTERM it handled gracefully
    assert_exactly_once(state, documents, 1, config_key)


REINDEX = {"chunker": "fixed", "max_chunk_tokens": 48}   # nothing embedded yet at this size: the build takes a while
# Phases where v2 is (partly or wholly) written but not live; the poll normally catches the build, 64 of 100 done.
AFTER_BUILD = ("optimize", "catch_up", "gate")


def test_sigkill_mid_reindex_then_restart(tmp_path, keys, documents, redis, models_ready):
    """Kill the server (the job's consumer with the embedded store) while the reindex writes the new version:
    the restart keeps the old version live, fails the job with a reason, drops the half-built version, and a
    new reindex completes with every document exactly once."""
    state = tmp_path / "state"
    env = server_env(state, keys, redis_url=redis.url, FATHOM_JOBS__KEY_PREFIX=PREFIX, **NO_CACHE_NO_LIMITS)
    admin = keys.headers("admin")

    s1 = ServerProcess(env, tmp_path / "s1.log").start()
    try:
        with client(s1.url) as c:
            r = c.post("/v1/documents", json={"documents": documents}, headers=admin)
            assert r.status_code == 200, r.text
            config_key = overview(c, keys)["versions"][0]["layout"]["build"]["chunker"]
            r = c.post("/v1/admin/reindex", json=REINDEX, headers=admin)
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            deadline = time.monotonic() + 300
            while True:
                r = c.get(f"/v1/admin/jobs/{job_id}", headers=admin)
                assert r.status_code == 200, r.text
                job = r.json()
                if (job["phase"] == "build" and job["progress"].get("done", 0) > 0) or job["phase"] in AFTER_BUILD:
                    s1.kill()       # at least one build batch is written into v2, which is not live yet
                    break
                assert job["status"] in ("queued", "running"), f"the job ended before the kill: {job}"
                assert time.monotonic() < deadline, job
                time.sleep(0.02)
    finally:
        s1.kill()
    record = {k.decode(): json.loads(v) for k, v in redis.client().hgetall(f"{PREFIX}:job:{job_id}").items()}
    assert record["status"] == "running" and record["target_version"] == 2
    assert manifest(state, TENANT)["live"] == 1 and (state / "edge" / TENANT / "v2").is_dir()
    print(f"\nSIGKILL mid-reindex: {job['phase']} {job['progress']}, v2 on disk (not live), v1 live")

    s2 = ServerProcess(env, tmp_path / "s2.log").start()
    try:
        with client(s2.url) as c:
            # Queries never see the half-built version, even before the job is recovered.
            retrieve_ok(c, keys, documents, version=1)
            deadline = time.monotonic() + 120
            while (job := c.get(f"/v1/admin/jobs/{job_id}", headers=admin).json())["status"] == "running":
                assert time.monotonic() < deadline, job
                time.sleep(0.2)
            assert job["status"] == "failed" and job["error"]["code"] == "heartbeat_expired", job
            assert "live version 1 was not changed" in job["error"]["message"]
            index = assert_live_consistent(c, keys, {d["id"] for d in documents}, live=1)
            assert [v["version"] for v in index["versions"]] == [1], index     # v2 dropped
            print(f"after restart: job {job['status']} ({job['error']['code']}), live v{index['live_version']}, "
                  f"versions {[v['version'] for v in index['versions']]}")

            # Re-running the reindex completes it.
            r = c.post("/v1/admin/reindex", json=REINDEX, headers=admin)
            assert r.status_code == 202, r.text
            deadline = time.monotonic() + 300
            while (rerun := c.get(f"/v1/admin/jobs/{r.json()['id']}", headers=admin).json())["status"] in ("queued", "running"):
                assert time.monotonic() < deadline, rerun
                time.sleep(0.2)
            assert rerun["status"] == "succeeded", rerun
            assert rerun["result"]["previous_version"] == 1 and rerun["result"]["new_version"] == 2
            assert rerun["counts"]["documents"] == len(documents)
            retrieve_ok(c, keys, documents, version=2)
            index = overview(c, keys)
            assert index["live_version"] == 2 and index["previous_version"] == 1
    finally:
        assert s2.stop() in (0, -15), s2.tail()   # uvicorn re-raises the SIGTERM it handled gracefully
    # The registry's chunk counts describe the live version (v2, rechunked); v1's are kept aside for a rollback.
    assert_exactly_once(state, documents, 2, config_key)
    assert_exactly_once(state, documents, 1, config_key, same_chunking=False)    # the rollback target is intact too
