"""Jobs on the Redis path, against private redis-server processes: queue, records, locks, outages, crashes.

* the API's consumer thread takes reindex jobs from the Redis stream;
* Redis stopped in the middle of a job: job routes answer a clear 503, the job
  stops and drops its half-built version, retrieval keeps serving, and the
  consumer picks up again when Redis is back;
* ``fathom worker`` SIGKILLed in the middle of a job: the live version is
  untouched, and the next worker marks the job failed and drops the
  half-built version;
* ``fathom worker`` refuses an embedded store another process owns.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fathom.ingest.ingest_pipeline import IngestItem
from fathom.retrieval.tenancy import Tenant
from fathom.service.app import create_app
from fathom.service.cli import SAMPLE_CORPUS, ingest_paths
from fathom.service.jobs.model import JobStatus
from fathom.service.jobs.system import JobSystem
from fathom.service.runtime import Runtime
from tests.jobs_support import building, cacm_corpus, copy_embedding_cache, job_settings, upload_texts, wait_job
from tests.ops_support import RedisServer
from tests.support import Keys, REPO, client, live_server

PREFIX = "killed-worker"   # this deployment shares the Redis server with the API's above, not its queue


@pytest.fixture(scope="module")
def keys() -> Keys:
    k = Keys()
    k.add("q-admin", "q", "admin")
    k.add("q-app", "q", "app")
    return k


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("jobs-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def corpus(data_dir):
    return cacm_corpus(data_dir)


@pytest.fixture(scope="module")
def rt(tmp_path_factory, base_settings, models_ready, keys, redis):
    runtime = Runtime.open(job_settings(base_settings, tmp_path_factory.mktemp("redis-jobs-state"), keys,
                                        redis_url=redis.url, jobs={"heartbeat_s": 0.5}))
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def base_url(rt, keys, corpus):
    with live_server(create_app(rt.settings, rt)) as url:
        with client(url) as c:
            files = [("files", (p.name, p.read_bytes())) for p in sorted(SAMPLE_CORPUS.iterdir())]
            assert c.post("/v1/documents", files=files, headers=keys.headers("q-admin")).status_code == 200
            upload_texts(c, keys.headers("q-admin"), corpus.documents)
        yield url


def test_reindex_runs_through_the_redis_queue(base_url, keys, rt, redis):
    admin = keys.headers("q-admin")
    assert rt.jobs is not None and rt.jobs.backend == "redis" and rt.jobs.consume_in_api
    with client(base_url) as c:
        job = wait_job(c, admin, c.post("/v1/admin/reindex", headers=admin).json()["id"])
    assert job["status"] == "succeeded" and job["worker"] == rt.jobs.worker and job["result"]["gate"] is None
    r = redis.client()
    stored = r.hgetall(f"fathom:job:{job['id']}")
    assert json.loads(stored[b"status"]) == "succeeded" and json.loads(stored[b"tenant"]) == "q"
    assert 0 < r.ttl(f"fathom:job:{job['id']}") <= rt.settings.jobs.retention_s
    assert r.xinfo_groups("fathom:jobs:stream")[0]["pending"] == 0      # acknowledged
    assert r.get("fathom:lock:reindex:q") is None                         # the tenant is free


def test_redis_stopped_mid_job(base_url, keys, rt, redis):
    admin, tenant = keys.headers("q-admin"), Tenant("q")
    live, versions = rt.store.live_version(tenant), rt.store.versions(tenant)
    with client(base_url) as c:
        job_id = c.post("/v1/admin/reindex", json={"chunker": "fixed", "max_chunk_tokens": 64}, headers=admin).json()["id"]
        wait_job(c, admin, job_id, until=building)
        redis.stop()
        try:
            r = c.get(f"/v1/admin/jobs/{job_id}", headers=admin)
            assert r.status_code == 503 and r.headers["Retry-After"]
            problem = r.json()
            assert problem["code"] == "jobs_unavailable" and f"Redis at 127.0.0.1:{redis.port}" in problem["detail"]
            r = c.post("/v1/admin/reindex", headers=admin)
            assert r.status_code == 503 and r.json()["code"] == "jobs_unavailable"
            # Retrieval does not depend on the job queue.
            for query in ("How do honeybees tell each other where flowers are?", "time sharing operating systems"):
                answer = c.post("/v1/retrieve", json={"query": query}, headers=keys.headers("q-app"))
                assert answer.status_code == 200 and answer.json()["status"] == "ok"
            # The job cannot prove it still holds the tenant: it stops and drops what it built.
            deadline = time.monotonic() + 60
            while rt.store.versions(tenant) != versions or rt.jobs.runner.busy is not None:
                assert time.monotonic() < deadline, rt.store.versions(tenant)
                time.sleep(0.2)
            assert rt.store.live_version(tenant) == live
        finally:
            redis.start()
        # Redis is back (empty: no persistence), and so is the queue.
        assert c.get(f"/v1/admin/jobs/{job_id}", headers=admin).json()["code"] == "job_not_found"
        job = wait_job(c, admin, c.post("/v1/admin/reindex", headers=admin).json()["id"])
        assert job["status"] == "succeeded" and job["result"]["previous_version"] == live


def _worker(state: Path, redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DO_NOT_TRACK": "1", "FATHOM_STATE_DIR": str(state), "FATHOM_REDIS_URL": redis_url,
           "FATHOM_RERANK__KIND": "none", "FATHOM_INGEST__EMBED_MPNET": "false", "FATHOM_CACHE__ENABLED": "false",
           "FATHOM_LIMITS__ENABLED": "false", "FATHOM_JOBS__HEARTBEAT_S": "0.5",
           "FATHOM_JOBS__HEARTBEAT_TIMEOUT_S": "4", "FATHOM_JOBS__LOCK_TTL_S": "6", "FATHOM_JOBS__KEY_PREFIX": PREFIX}
    return subprocess.Popen([sys.executable, "-m", "fathom.service.cli", "worker"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(log, "ab"))


def _manifest(state: Path, tenant: str) -> dict:
    return json.loads((state / "edge" / tenant / "manifest.json").read_text())


def _wait_record(jobs: JobSystem, job_id: str, until, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while True:
        job = jobs.get(job_id, "k")
        if until(job):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_killed_worker_leaves_the_live_version_and_its_job_is_failed(tmp_path, base_settings, rt, redis, corpus):
    state = tmp_path / "state"
    copy_embedding_cache(rt.settings.state_path, state)   # the seed ingest below then embeds nothing
    settings = job_settings(base_settings, state, Keys(), redis_url=redis.url,
                            jobs={"heartbeat_s": 0.5, "heartbeat_timeout_s": 4.0, "lock_ttl_s": 6.0, "key_prefix": PREFIX})
    seed = Runtime.open(settings)
    try:
        ingest_paths(seed, "k", [SAMPLE_CORPUS], {}, quiet=True)
        seed.ingest.ingest(Tenant("k"), [IngestItem(document_id=d["id"], text=d["text"], title=d["title"])
                                         for d in corpus.documents])
    finally:
        seed.close()
    jobs = JobSystem.open(settings)
    first = _worker(state, redis.url, tmp_path / "worker.log")
    try:
        # Smaller chunks than anything embedded so far: the build computes embeddings, long enough to kill it.
        job = jobs.submit("reindex", "k", {"chunker": "fixed", "max_chunk_tokens": 48})
        _wait_record(jobs, job.id, lambda j: j.phase == "build" and j.progress.get("done", 0) > 0)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        # Dead mid-build: version 2 is half-built on disk, version 1 is still the live one.
        assert jobs.get(job.id, "k").status is JobStatus.RUNNING
        assert (state / "edge" / "k" / "v2").is_dir() and _manifest(state, "k")["live"] == 1

        second = _worker(state, redis.url, tmp_path / "worker.log")
        try:
            failed = _wait_record(jobs, job.id, lambda j: j.status is not JobStatus.RUNNING)
            assert failed.status is JobStatus.FAILED and failed.error["code"] == "heartbeat_expired"
            assert "live version 1 was not changed" in failed.error["message"]
            assert not (state / "edge" / "k" / "v2").exists() and _manifest(state, "k")["live"] == 1
            # The tenant is free again and the new worker runs the next reindex to the end.
            again = jobs.submit("reindex", "k", {})
            done = _wait_record(jobs, again.id, lambda j: j.status not in (JobStatus.QUEUED, JobStatus.RUNNING))
            assert done.status is JobStatus.SUCCEEDED, done.error
            assert done.result["previous_version"] == 1 and done.result["new_version"] == 2   # v2 reused: never live
            assert _manifest(state, "k")["live"] == 2
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=60) == 0
    finally:
        if first.poll() is None:
            first.kill()
        jobs.close()


def test_worker_refuses_a_store_the_api_owns(rt, base_url, redis):
    env = {**os.environ, "DO_NOT_TRACK": "1", "FATHOM_STATE_DIR": str(rt.settings.state_path)}
    run = subprocess.run([sys.executable, "-m", "fathom.service.cli", "worker"], cwd=REPO, capture_output=True, text=True,
                         env={**env, "FATHOM_REDIS_URL": redis.url}, timeout=120)
    assert run.returncode == 2 and f"owned by process {os.getpid()}" in run.stderr
    run = subprocess.run([sys.executable, "-m", "fathom.service.cli", "worker"], cwd=REPO, capture_output=True, text=True,
                         env={k: v for k, v in env.items() if k != "FATHOM_REDIS_URL"}, timeout=120)
    assert run.returncode == 2 and "needs FATHOM_REDIS_URL" in run.stderr
