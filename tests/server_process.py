"""Test helpers for the reliability suite: ``fathom serve`` as a real subprocess, and on-disk state inspection.

A server in its own process can be SIGKILLed (durability) and observed from
outside through ``/proc/<pid>`` (soak: RSS, open file descriptors), which an
in-process uvicorn thread cannot.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support import Keys, free_port

REPO = Path(__file__).resolve().parent.parent


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


class ServerProcess:
    """``python -m fathom.service.cli serve`` on a free loopback port; the test decides how it ends (SIGTERM or SIGKILL)."""

    def __init__(self, env: dict[str, str], log: Path):
        self.env, self.log = env, log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 240.0) -> "ServerProcess":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fathom.service.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"server did not answer /healthz in {timeout_s}s:\n{self.tail()}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no lifespan shutdown, no flush, no lock release but the kernel's."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout_s: float = 90.0) -> int:
        """SIGTERM and wait: uvicorn's graceful shutdown (the lifespan closes the store)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
                raise
        return self.proc.returncode

    def tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_bytes()[-n:].decode(errors="replace")
        except FileNotFoundError:
            return ""

    # --- /proc figures -----------------------------------------------------------------
    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def fds(self) -> list[str]:
        """What each open file descriptor points at (``socket:[n]``, ``pipe:[n]``, a path, ``... (deleted)``)."""
        out = []
        base = Path(f"/proc/{self.pid}/fd")
        for fd in base.iterdir():
            try:
                out.append(os.readlink(fd))
            except FileNotFoundError:   # closed while listing
                continue
        return out


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


