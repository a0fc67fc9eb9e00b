"""Test helpers for the reliability suite: the environment of a test server, and on-disk state inspection.

The server process itself is ``fathom.benchmarks.server_process.ServerProcess`` (shared with the
benchmarks): a real ``fathom serve`` that can be SIGKILLed (durability) and observed from outside
through ``/proc/<pid>`` (soak: RSS, open file descriptors), which an in-process uvicorn thread cannot.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fathom.benchmarks.server_process import REPO_ROOT as REPO
from fathom.benchmarks.server_process import ServerProcess
from tests.support import Keys

__all__ = ["REPO", "ServerProcess", "audit", "manifest", "registry_ok", "server_env", "source_hash"]


def server_env(state: Path, keys: Keys, *, redis_url: str | None = None, **extra: str) -> dict[str, str]:
    """Environment of a test server: real models and stores, sized for a shared 2-core machine (no mpnet, no
    reranker), keys given inline (never the developer's key file), short job heartbeats so a dead job is noticed
    within seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FATHOM_") or k in ("FATHOM_HOME", "FATHOM_DATA_DIR")}
    env.update({
        "DO_NOT_TRACK": "1", "FATHOM_STATE_DIR": str(state), "FATHOM_SERVICE__API_KEYS": keys.json(),
        "FATHOM_RERANK__KIND": "none", "FATHOM_INGEST__EMBED_MPNET": "false",
        "FATHOM_JOBS__HEARTBEAT_S": "0.5", "FATHOM_JOBS__HEARTBEAT_TIMEOUT_S": "4", "FATHOM_JOBS__LOCK_TTL_S": "6",
        "FATHOM_SERVICE__LOG_LEVEL": "WARNING",
    })
    if redis_url:
        env["FATHOM_REDIS_URL"] = redis_url
    env.update(extra)
    return env


# --- on-disk state, read while no process owns it -------------------------------------------------------
def registry_ok(state: Path, tenant: str) -> int:
    """Documents recorded ``ok`` for the tenant, read from the SQLite registry while a server may be writing it."""
    db = state / "registry.db"
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute("SELECT count(*) FROM documents WHERE tenant = ? AND status = 'ok'", (tenant,)).fetchone()[0]
    except sqlite3.OperationalError:    # the table is created by the server's first open
        return 0
    finally:
        con.close()


def manifest(state: Path, tenant: str) -> dict[str, Any]:
    path = state / "edge" / tenant / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


@dataclass
class VersionAudit:
    """One index version of a tenant, checked against the document registry (the record of what it must hold)."""

    version: int
    points: int
    documents: dict[str, list[dict[str, Any]]]      # document id -> payloads of its chunks
    registry: dict[str, Any]                         # document id -> DocumentRecord (status ok)

    def problems(self, *, chunk_counts_from_registry: bool = True) -> list[str]:
        """Every way the version differs from "each registered document exactly once, nothing else"."""
        out = []
        for doc_id in sorted(set(self.documents) - set(self.registry)):
            out.append(f"{doc_id}: {len(self.documents[doc_id])} chunk(s) in v{self.version} but not in the registry")
        for doc_id, rec in sorted(self.registry.items()):
            chunks = self.documents.get(doc_id, [])
            if not chunks:
                out.append(f"{doc_id}: registered (v{rec.doc_version}, {rec.chunk_count} chunks) but absent")
                continue
            versions = {c["doc_version"] for c in chunks}
            if versions != {rec.doc_version}:
                out.append(f"{doc_id}: chunks of doc versions {sorted(versions)}, registry says {rec.doc_version}")
            indexes = sorted(c["chunk_index"] for c in chunks)
            expected = chunks[0]["chunk_count"]
            if indexes != list(range(expected)) or any(c["chunk_count"] != expected for c in chunks):
                out.append(f"{doc_id}: chunk indexes {indexes}, expected 0..{expected - 1} once each")
            if chunk_counts_from_registry and expected != rec.chunk_count:
                out.append(f"{doc_id}: {expected} chunks, registry says {rec.chunk_count}")
            hashes = {c["content_hash"] for c in chunks}
            if hashes != {rec.content_hash}:
                out.append(f"{doc_id}: chunk content hashes {sorted(hashes)} != registry {rec.content_hash}")
        if self.points != sum(len(c) for c in self.documents.values()):
            out.append(f"count() says {self.points} points, scroll found {sum(len(c) for c in self.documents.values())}")
        return out


def audit(state: Path, tenant: str, version: int | None = None) -> VersionAudit:
    """Open the embedded store and the registry of ``state`` (no server may be running on it) and read one version."""
    from fathom.ingest.registry import Registry
    from fathom.retrieval.store.contract import IndexRef
    from fathom.retrieval.store.edge_store import EdgeStore
    from fathom.retrieval.tenancy import Tenant

    t = Tenant(tenant)
    store = EdgeStore(state / "edge")
    registry = Registry(f"sqlite:///{state / 'registry.db'}")
    try:
        version = version if version is not None else store.live_version(t)
        assert version is not None, f"tenant {tenant} has no live version"
        ref = IndexRef(t, version)
        documents: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for hit in store.scroll(ref):
            documents[hit.payload["document_id"]].append(hit.payload)
        records = {r.document_id: r for r in registry.list(t, status="ok", limit=100_000)}
        return VersionAudit(version, store.count(ref), dict(documents), records)
    finally:
        store.close()
        registry.close()


def source_hash(document: dict[str, str], config_key: str) -> str:
    """The content hash the pipeline must record for a JSON-uploaded document: parsed as the API parses it."""
    from fathom.ingest.ingest_pipeline import IngestItem, IngestPipeline, content_hash

    parsed = IngestPipeline.parse(IngestItem(document_id=document["id"], text=document["text"],
                                             title=document.get("title")))
    return content_hash(parsed, {}, config_key)


