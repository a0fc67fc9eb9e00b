"""Test helpers for documents, reindex and job tests: settings, a small judged corpus, HTTP polling."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from fathom.benchmarks.datasets import load_beir
from fathom.service.core.config import Settings
from tests.support import Keys


def job_settings(base: Settings, state: Path, keys: Keys, *, redis_url: str | None = None, **groups: Any) -> Settings:
    """Real models and stores, sized for this machine: no mpnet (the first-stage ranking is what the gate scores),
    no answer cache (every query must reach the index) and no rate limits (tests poll)."""
    update: dict[str, Any] = {
        "state_dir": state, "registry_url": None, "redis_url": redis_url,
        "service": base.service.model_copy(update={"api_keys": keys.json(), "api_keys_file": None}),
        "rerank": base.rerank.model_copy(update={"kind": "none"}),
        "ingest": base.ingest.model_copy(update={"embed_mpnet": False}),
        "cache": base.cache.model_copy(update={"enabled": False}),
        "limits": base.limits.model_copy(update={"enabled": False}),
    }
    for name, value in groups.items():
        update[name] = getattr(base, name).model_copy(update=value)
    return base.model_copy(update=update)


@dataclass(frozen=True)
class JudgedCorpus:
    """CACM documents with queries that have many relevant documents each, so recall@10 is far from 1
    and a worse index configuration shows up in it."""

    documents: list[dict[str, str]]          # {"id", "title", "text"} for POST /v1/documents
    golden: list[dict[str, Any]]             # {"query", "expected"} for PUT /v1/admin/golden-set


def cacm_corpus(data_dir: Path, *, queries: int = 10, distractors: int = 100) -> JudgedCorpus:
    ds = load_beir(data_dir / "cacm")
    qids = sorted((q for q in ds.qrels if 6 <= len(ds.qrels[q]) <= 20), key=int)[:queries]
    relevant = {d for q in qids for d in ds.qrels[q]}
    docs = list(ds.corpus())
    noise = [d for d in random.Random(7).sample(docs, distractors * 2) if d.id not in relevant][:distractors]
    chosen = [d for d in docs if d.id in relevant] + noise
    return JudgedCorpus(
        documents=[{"id": d.id, "title": d.title, "text": f"{d.title}\n\n{d.text}".strip()} for d in chosen],
        golden=[{"query": ds.queries[q], "expected": sorted(ds.qrels[q])} for q in qids],
    )


def upload_texts(c: httpx.Client, headers: dict[str, str], documents: list[dict[str, str]], batch: int = 100) -> None:
    for i in range(0, len(documents), batch):
        r = c.post("/v1/documents", json={"documents": documents[i:i + batch]}, headers=headers)
        assert r.status_code == 200, r.text


def wait_job(c: httpx.Client, headers: dict[str, str], job_id: str, *, until: Any = None,
             timeout_s: float = 240.0) -> dict[str, Any]:
    """Poll a job until ``until(job)`` (default: it ended) and return it."""
    until = until or ended
    deadline = time.monotonic() + timeout_s
    while True:
        r = c.get(f"/v1/admin/jobs/{job_id}", headers=headers)
        assert r.status_code == 200, r.text
        job = r.json()
        if until(job):
            return job
        if ended(job):
            raise AssertionError(f"the job ended before the awaited state: {job}")
        if time.monotonic() > deadline:
            raise AssertionError(f"job did not get there in {timeout_s}s: {job}")
        time.sleep(0.1)


def ended(job: dict[str, Any]) -> bool:
    return job["status"] in ("succeeded", "failed", "cancelled")


def building(job: dict[str, Any]) -> bool:
    """The job is writing the new version (past the measuring pass), so a write now lands after its watermark."""
    return job["phase"] == "build" and job["progress"].get("done", 0) > 0


def copy_embedding_cache(src_state: Path, dst_state: Path) -> None:
    """Seed a new state folder with another's embedding cache (SQLite's online backup: the source may be in use).

    The cache is keyed by model identity and exact text, so this only saves recomputing identical embeddings.
    """
    import sqlite3

    dst_state.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(str(src_state / "embeddings.sqlite"))
    dst = sqlite3.connect(str(dst_state / "embeddings.sqlite"))
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
