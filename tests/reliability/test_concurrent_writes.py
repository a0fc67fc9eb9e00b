"""Concurrent writes of one document id, over the real HTTP API: exactly one writer's content is live.

Each round, N writers send ``POST /v1/documents`` for the same id at once (a barrier releases them together),
with texts of very different lengths (one sentence to ~20 chunks), each sentence marked with its writer. After
every round the registry (``GET /v1/documents``) is audited against the index (every chunk of the document):

* every acknowledged write got its own version (``ok``; distinct versions), higher than the last round's;
* the registry's ``doc_version`` is the highest acknowledged one, and it is the only version in the index;
* the index holds exactly ``chunk_count`` chunks, chunk indexes ``0..chunk_count-1``, all of one writer's text
  (that writer's: the one acknowledged with the live version), nothing of another writer's tail.

Two deployments: the embedded store inside one API process (many request threads), and the server-backend
store written by three API processes sharing one PostgreSQL registry (``tests/shared_store.py`` says how the
processes share one store without a Qdrant binary). Before the fix the version was read outside the tenant's
write lock: writers shared a version, and a shorter write left a longer one's tail live.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from fathom.retrieval.store.contract import Hit, IndexRef
from fathom.retrieval.tenancy import Tenant
from fathom.service.app import create_app
from fathom.service.runtime import Runtime
from tests.jobs_support import job_settings
from tests.reliability_support import server_env
from tests.support import Keys, client, free_port, live_server

REPO = Path(__file__).resolve().parents[2]  # the repository root
TENANT = "race"
DOC = "shared/handbook.txt"
# Sentences per writer: one sentence, and texts of ~3 to ~20 fixed 32-token chunks.
LENGTHS = (1, 40, 4, 25, 10, 33)
WORDS = ("river", "granite", "lantern", "orchard", "harbor", "meadow", "compass", "violet", "thunder", "saddle")
MARK = re.compile(r"\bmk(\d+)x(\d+)\b")


def text_for(round_: int, writer: int) -> str:
    n = LENGTHS[writer % len(LENGTHS)]
    return " ".join(f"Sentence {i} of mk{round_}x{writer} mentions the {WORDS[(i + writer) % len(WORDS)]} "
                    f"and the {WORDS[(i * 3 + round_) % len(WORDS)]} again." for i in range(n))


def race(urls: list[str], headers: dict[str, str], round_: int, writers: int) -> list[dict[str, Any]]:
    """``writers`` concurrent uploads of DOC (round-robin over ``urls``); each one's single outcome, by writer."""
    barrier = threading.Barrier(writers)

    def write(w: int) -> dict[str, Any]:
        with httpx.Client(base_url=urls[w % len(urls)], timeout=120) as c:
            body = {"documents": [{"id": DOC, "text": text_for(round_, w)}]}
            barrier.wait()
            r = c.post("/v1/documents", json=body, headers=headers)
        assert r.status_code == 200, r.text
        (outcome,) = r.json()["documents"]
        return outcome

    with ThreadPoolExecutor(writers) as pool:
        return list(pool.map(write, range(writers)))


def audit(round_: int, outcomes: list[dict[str, Any]], record: dict[str, Any], points: list[Hit],
          last_version: int) -> int:
    assert all(o["status"] == "ok" for o in outcomes), outcomes      # every text differs from the live one
    versions = [o["doc_version"] for o in outcomes]
    assert len(set(versions)) == len(versions), f"round {round_}: writers shared a version: {versions}"
    assert min(versions) > last_version, f"round {round_}: versions {versions} not above the last live {last_version}"
    live = record["doc_version"]
    assert live == max(versions), f"round {round_}: registry v{live}, acknowledged {sorted(versions)}"
    winner = versions.index(live)
    assert record["chunk_count"] == outcomes[winner]["chunks"]
    in_index = sorted({p.payload["doc_version"] for p in points})
    assert in_index == [live], f"round {round_}: index holds versions {in_index}, registry v{live}"
    indexes = sorted(p.payload["chunk_index"] for p in points)
    assert indexes == list(range(record["chunk_count"])), (
        f"round {round_}: registry says {record['chunk_count']} chunks, index holds chunk indexes {indexes}")
    writers = {(int(r), int(w)) for p in points for r, w in MARK.findall(p.text)}
    assert writers == {(round_, winner)}, f"round {round_}: live chunks carry text of writers {sorted(writers)}"
    return live


def run_rounds(urls: list[str], keys: Keys, points: Callable[[], list[Hit]], rounds: int, writers: int) -> None:
    headers = keys.headers("race-admin")
    last = 0
    with client(urls[0]) as c:
        for round_ in range(rounds):
            outcomes = race(urls, headers, round_, writers)
            listed = c.get("/v1/documents", headers=headers).json()["documents"]
            (record,) = [d for d in listed if d["id"] == DOC]
            last = audit(round_, outcomes, record, points(), last)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys().add_tenants([TENANT])


def race_ingest_settings() -> dict[str, Any]:
    """Fixed 32-token windows: long texts become many chunks without the semantic chunker's sentence embeddings."""
    return {"embed_mpnet": False, "chunker": "fixed", "max_chunk_tokens": 32}


def test_one_api_process_embedded_store(tmp_path, base_settings, models_ready, keys):
    settings = job_settings(base_settings, tmp_path / "state", keys, ingest=race_ingest_settings())
    rt = Runtime.open(settings)
    tenant = Tenant(TENANT)

    def points() -> list[Hit]:
        return list(rt.store.scroll(IndexRef(tenant, rt.store.live_version(tenant)), document_id=DOC))

    try:
        with live_server(create_app(settings, rt)) as url:
            run_rounds([url], keys, points, rounds=12, writers=6)
    finally:
        rt.close()


# --- the server store, written by three API processes sharing one PostgreSQL registry ----------------------

# PG_URL and the pg_registry_url fixture: tests/conftest.py


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout_s}s")


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"API process exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not healthy after {timeout_s}s:\n{log.read_text()[-3000:]}")


def test_three_api_processes_server_store_postgres_registry(tmp_path, models_ready, keys, pg_registry_url):
    from tests.shared_store import RemoteStore

    env_base = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    store_port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        host = subprocess.Popen([sys.executable, "-c", f"from tests.shared_store import serve; "
                                 f"serve(('127.0.0.1', {store_port}))"], cwd=REPO, env=env_base)
        procs.append(host)
        _wait_port(store_port, host)
        urls, logs = [], []
        for n in range(3):
            port = free_port()
            env = server_env(tmp_path / f"state-{n}", keys, FATHOM_REGISTRY_URL=pg_registry_url,
                             FATHOM_STORE__BACKEND="server", FATHOM_STORE__URL="shared-test-store",
                             FATHOM_INGEST__CHUNKER="fixed", FATHOM_INGEST__MAX_CHUNK_TOKENS="32",
                             FATHOM_CACHE__ENABLED="false", FATHOM_LIMITS__ENABLED="false")
            env["PYTHONPATH"] = env_base["PYTHONPATH"]
            log = tmp_path / f"api-{n}.log"
            with open(log, "wb") as out:
                procs.append(subprocess.Popen([sys.executable, "-m", "tests.shared_store_api", str(store_port),
                                               str(port)], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT))
            urls.append(f"http://127.0.0.1:{port}")
            logs.append(log)
        for url, proc, log in zip(urls, procs[1:], logs):
            _wait_healthy(url, proc, log)
        store = RemoteStore(("127.0.0.1", store_port))
        tenant = Tenant(TENANT)

        def points() -> list[Hit]:
            return list(store.scroll(IndexRef(tenant, store.live_version(tenant)), document_id=DOC))

        run_rounds(urls, keys, points, rounds=8, writers=6)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _open_registry(url: str, out: "multiprocessing.Queue[str]") -> None:
    from fathom.ingest.registry import Registry

    try:
        Registry(url).close()
        out.put("ok")
    except Exception as exc:   # noqa: BLE001 - reported to the test
        out.put(type(exc).__name__)


def test_processes_opening_a_fresh_postgres_registry_together(pg_registry_url):
    """API replicas starting together on an empty database: the schema is created once, nobody fails
    (before: a unique violation in PostgreSQL's catalog killed 21 of 30 starts over 5 rounds of 6)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_open_registry, args=(pg_registry_url, out)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [out.get(timeout=10) for _ in procs] == ["ok"] * len(procs)
