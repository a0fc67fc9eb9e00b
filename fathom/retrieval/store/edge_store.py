"""Embedded store: the Qdrant engine in-process through ``qdrant-edge-py`` (pinned, beta API).

Searches run the backend-neutral plan of ``query_plan.py``; this module only translates it (and the
filters) into Edge types.

Layout on disk::

    <root>/<tenant>/manifest.json     {"live": 3, "previous": 2}   (replaced atomically)
    <root>/<tenant>/v3/               an EdgeShard
    <root>/<tenant>/v3.layout.json    which vectors the shard holds

A shard folder can be opened by one process only (its WAL is locked), so one
process owns the store: the API server, or a CLI/worker run while no server
is up. Shards are opened lazily and kept open.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from fathom.retrieval.store.contract import (
    DENSE,
    RERANK,
    SPARSE,
    ChunkPoint,
    Hit,
    IndexLayout,
    IndexNotFound,
    IndexRef,
    SearchRequest,
    StoreUnavailable,
    tenant_payload_guard,
)
from fathom.retrieval.store.filters import Condition, FilterSpec, document_filter, tenant_filter
from fathom.retrieval.store.query_plan import DenseLeg, Leg, QueryPlan, plan, to_hit
from fathom.retrieval.tenancy import Tenant


def _condition(c: Condition) -> qe.FieldCondition:
    if c.any_of is not None:
        return qe.FieldCondition(key=c.key, match=qe.MatchAny(any=list(c.any_of)))
    return qe.FieldCondition(key=c.key, match=qe.MatchValue(value=c.value))


def _filter(spec: FilterSpec) -> qe.Filter:
    return qe.Filter(
        must=[_condition(c) for c in spec.must],
        must_not=[_condition(c) for c in spec.must_not] or None,
    )


def _leg(leg: Leg) -> tuple[qe.Query, qe.SearchParams]:
    if isinstance(leg, DenseLeg):
        return qe.Query.Nearest(leg.vector, using=leg.using), qe.SearchParams(hnsw_ef=leg.hnsw_ef, exact=leg.exact)
    sparse = qe.SparseVector(indices=leg.vector.indices, values=leg.vector.values)
    return qe.Query.Nearest(sparse, using=leg.using), qe.SearchParams(idf=qe.IdfParams(corpus=_filter(leg.idf_corpus)))


def _query_request(query: QueryPlan) -> qe.QueryRequest:
    """The plan as one Edge query: a single leg is the query; two are prefetches under the fusion."""
    flt = _filter(query.filter)
    if query.single is not None:
        q, params = _leg(query.single)
        return qe.QueryRequest(limit=query.limit, query=q, filter=flt, params=params, with_payload=True)
    assert query.fusion is not None
    prefetches = [qe.Prefetch(limit=leg.limit, filter=flt, params=params, query=q)
                  for leg in query.legs for q, params in [_leg(leg)]]
    fusion = qe.Fusion.Rrf(k=query.fusion.rrf_k) if query.fusion.kind == "rrf" else qe.Fusion.Dbsf()
    return qe.QueryRequest(limit=query.limit, prefetches=prefetches, query=fusion, filter=flt, with_payload=True)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write-then-rename so readers see the old or the new file, never a torn one."""
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class EdgeStore:
    """:class:`~fathom.retrieval.store.contract.VectorStore` on Qdrant Edge shards."""

    def __init__(self, root: Path, *, hnsw_m: int = 16, hnsw_ef_construct: int = 100, search_threads: int | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._hnsw = (hnsw_m, hnsw_ef_construct)
        self._search_threads = search_threads
        self._shards: dict[tuple[str, int], qe.EdgeShard] = {}
        # Manifests are read once and then kept: this process owns the store, so only its own
        # `activate` changes them (and updates this copy) - no disk read on the query path.
        self._manifests: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()

    # --- paths ------------------------------------------------------------
    def _tenant_dir(self, tenant: Tenant) -> Path:
        return self.root / tenant.id

    def _shard_dir(self, ref: IndexRef) -> Path:
        return self._tenant_dir(ref.tenant) / f"v{ref.version}"

    def _layout_file(self, ref: IndexRef) -> Path:
        return self._tenant_dir(ref.tenant) / f"v{ref.version}.layout.json"

    def _manifest(self, tenant: Tenant) -> dict[str, Any]:
        manifest = self._manifests.get(tenant.id)
        if manifest is None:
            path = self._tenant_dir(tenant) / "manifest.json"
            manifest = json.loads(path.read_text()) if path.exists() else {}
            if manifest:
                self._manifests[tenant.id] = manifest
        return manifest

    # --- versions -----------------------------------------------------------
    def _config(self, layout: IndexLayout) -> qe.EdgeConfig:
        m, ef = self._hnsw
        vectors = {DENSE: qe.EdgeVectorParams(size=layout.dense_dim, distance=qe.Distance.Cosine)}
        if layout.rerank_dim:
            # Rescoring vectors are only ever read back by id, never searched: no HNSW for them.
            vectors[RERANK] = qe.EdgeVectorParams(
                size=layout.rerank_dim, distance=qe.Distance.Cosine,
                hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=ef, full_scan_threshold=10_000),
            )
        return qe.EdgeConfig(
            vectors=vectors,
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            hnsw_config=qe.HnswIndexConfig(m=m, ef_construct=ef, full_scan_threshold=10_000),
            max_search_threads=self._search_threads,
        )

    def create_index(self, ref: IndexRef, layout: IndexLayout) -> None:
        with self._lock:
            path = self._shard_dir(ref)
            if path.exists():
                raise FileExistsError(f"index {ref.tenant}/v{ref.version} already exists")
            path.parent.mkdir(parents=True, exist_ok=True)
            shard = qe.EdgeShard.create(str(path), self._config(layout))
            shard.update(qe.UpdateOperation.create_field_index("tenant_id", qe.KeywordIndexParams(is_tenant=True)))
            shard.update(qe.UpdateOperation.create_field_index("document_id", qe.KeywordIndexParams()))
            _write_json_atomic(self._layout_file(ref), layout.to_json())
            self._shards[(ref.tenant.id, ref.version)] = shard

    def layout(self, ref: IndexRef) -> IndexLayout:
        path = self._layout_file(ref)
        if not path.exists():
            raise self._absent(ref, path)
        return IndexLayout.from_json(json.loads(path.read_text()))

    def _absent(self, ref: IndexRef, path: Path) -> Exception:
        """What a missing file of ``ref`` means: a version never written, or a live one whose files were lost.

        The manifest naming it live means it existed (deleted, unmounted): saying "no such index" would let the
        API present data loss as an empty index, so that is StoreUnavailable (503).
        """
        if self._manifest(ref.tenant).get("live") == ref.version:
            return StoreUnavailable(f"live index {ref.tenant}/v{ref.version} is missing: {path} not found")
        return IndexNotFound(f"no index {ref.tenant}/v{ref.version}")

    def live_version(self, tenant: Tenant) -> int | None:
        return self._manifest(tenant).get("live")

    def activate(self, ref: IndexRef) -> int | None:
        with self._lock:
            self._shard(ref)  # must exist and open
            manifest = self._manifest(ref.tenant)
            previous = manifest.get("live")
            if previous == ref.version:
                return previous
            manifest = {"live": ref.version, "previous": previous}
            _write_json_atomic(self._tenant_dir(ref.tenant) / "manifest.json", manifest)
            self._manifests[ref.tenant.id] = manifest
            return previous

    def previous_version(self, tenant: Tenant) -> int | None:
        return self._manifest(tenant).get("previous")

    def versions(self, tenant: Tenant) -> list[int]:
        d = self._tenant_dir(tenant)
        if not d.exists():
            return []
        return sorted(int(p.name[1:]) for p in d.iterdir() if p.is_dir() and p.name[1:].isdigit() and p.name[0] == "v")

    def tenants(self) -> list[Tenant]:
        return [Tenant(p.name) for p in sorted(self.root.iterdir()) if p.is_dir() and (p / "manifest.json").exists()]

    def drop_index(self, ref: IndexRef) -> None:
        with self._lock:
            if self.live_version(ref.tenant) == ref.version:
                raise ValueError(f"refusing to drop the live index {ref.tenant}/v{ref.version}")
            shard = self._shards.pop((ref.tenant.id, ref.version), None)
            if shard is not None:
                shard.close()
            shutil.rmtree(self._shard_dir(ref), ignore_errors=True)
            self._layout_file(ref).unlink(missing_ok=True)

    # --- shard handles --------------------------------------------------------
    def _shard(self, ref: IndexRef) -> qe.EdgeShard:
        key = (ref.tenant.id, ref.version)
        shard = self._shards.get(key)
        if shard is not None:
            return shard
        with self._lock:
            shard = self._shards.get(key)
            if shard is None:
                path = self._shard_dir(ref)
                if not path.exists():
                    raise self._absent(ref, path)
                try:
                    shard = qe.EdgeShard.load(str(path))
                except Exception as exc:  # locked by another process, corrupt, ...
                    # The text before the first ":" is what a client sees (the API keeps it); the path is for logs.
                    raise StoreUnavailable(f"cannot open shard {ref.tenant}/v{ref.version}: {path}: {exc}") from exc
                self._shards[key] = shard
            return shard

    def _resolve(self, tenant: Tenant, version: int | None) -> IndexRef:
        version = version or self.live_version(tenant)
        if version is None:
            raise IndexNotFound(f"tenant {tenant} has no index yet")
        return IndexRef(tenant, version)

    # --- writes -----------------------------------------------------------------
    def upsert(self, ref: IndexRef, points: Sequence[ChunkPoint]) -> None:
        if not points:
            return
        shard = self._shard(ref)
        edge_points = []
        for p in points:
            if p.payload.get("tenant_id") != ref.tenant.id:
                raise ValueError("point payload tenant_id does not match the index tenant")
            vec: dict[str, Any] = {
                DENSE: p.dense.astype(np.float32).tolist(),
                SPARSE: qe.SparseVector(indices=p.sparse.indices, values=p.sparse.values),
            }
            if p.rerank is not None:
                vec[RERANK] = p.rerank.astype(np.float32).tolist()
            edge_points.append(qe.Point(id=p.id, vector=vec, payload=p.payload))
        try:
            shard.update(qe.UpdateOperation.upsert_points(edge_points))
        except Exception as exc:
            raise StoreUnavailable(f"upsert failed: {exc}") from exc

    def delete_document(self, ref: IndexRef, document_id: str, *, keep_version: int | None = None) -> None:
        flt = _filter(document_filter(ref.tenant, document_id, keep_version))
        shard = self._shard(ref)
        try:
            shard.update(qe.UpdateOperation.delete_points_by_filter(flt))
        except Exception as exc:
            raise StoreUnavailable(f"delete failed: {exc}") from exc

    def optimize(self, ref: IndexRef) -> None:
        shard = self._shard(ref)
        shard.optimize()
        shard.flush()

    def flush(self, ref: IndexRef) -> None:
        self._shard(ref).flush()

    # --- reads --------------------------------------------------------------------
    def search(self, request: SearchRequest) -> list[Hit]:
        query = plan(request)
        shard = self._shard(self._resolve(query.tenant, query.version))
        if not query.legs:
            return []   # e.g. a bm25 query made only of stop words
        try:
            points = shard.query(_query_request(query))
        except Exception as exc:
            raise StoreUnavailable(f"query failed: {exc}") from exc
        return tenant_payload_guard(query.tenant, [to_hit(p.id, p.score, p.payload, p.vector) for p in points])

    def scroll(self, ref: IndexRef, *, document_id: str | None = None, with_vectors: tuple[str, ...] = (),
               batch: int = 256) -> Iterator[Hit]:
        shard = self._shard(ref)
        spec = document_filter(ref.tenant, document_id) if document_id else tenant_filter(ref.tenant)
        offset = None
        while True:
            records, offset = shard.scroll(qe.ScrollRequest(
                offset=offset, limit=batch, filter=_filter(spec), with_payload=True,
                with_vector=list(with_vectors) or False))
            for r in records:
                yield to_hit(r.id, 0.0, r.payload, r.vector)
            if offset is None:
                return

    def fetch_vectors(self, ref: IndexRef, ids: Sequence[str], names: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
        if not ids or not names:
            return {}
        try:
            records = self._shard(ref).retrieve(list(ids), with_payload=["tenant_id"], with_vector=list(names))
        except Exception as exc:
            raise StoreUnavailable(f"retrieve failed: {exc}") from exc
        return {str(r.id): to_hit(r.id, 0.0, None, r.vector).vectors for r in records
                if (r.payload or {}).get("tenant_id") == ref.tenant.id}

    def count(self, ref: IndexRef, *, document_id: str | None = None) -> int:
        spec = document_filter(ref.tenant, document_id) if document_id else tenant_filter(ref.tenant)
        return self._shard(ref).count(qe.CountRequest(exact=True, filter=_filter(spec)))

    def size_bytes(self, ref: IndexRef) -> int | None:
        path = self._shard_dir(ref)
        return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file()) if path.exists() else None

    def describe(self, ref: IndexRef) -> dict[str, Any]:
        layout = self.layout(ref)
        return {"backend": "edge", "shard_dir": str(self._shard_dir(ref)), "live": self.live_version(ref.tenant) == ref.version,
                "vectors": {DENSE: {"size": layout.dense_dim, "distance": "Cosine"},
                            **({RERANK: {"size": layout.rerank_dim, "distance": "Cosine"}} if layout.rerank_dim else {})},
                "sparse": {SPARSE: {"modifier": "idf"}}, "shard_number": 1, "replication_factor": 1}

    def ping(self) -> None:
        if not self.root.is_dir() or not os.access(self.root, os.W_OK):
            raise StoreUnavailable(f"store folder {self.root} is not writable")

    def close(self) -> None:
        with self._lock:
            for shard in self._shards.values():
                try:
                    shard.flush()
                    shard.close()
                except Exception:
                    pass
            self._shards.clear()
