"""Server store: a Qdrant cluster (>= 1.19) through qdrant-client.

Layout: collection ``<prefix>__<tenant>__v<N>`` per index version and alias
``<prefix>__<tenant>__live`` pointing at the live one (tenant ids may hold
``__``, so names are read back from the right, and an alias, ending in
``__live``, can never be another tenant's collection, ending in ``__v<N>``); activation is one atomic
alias swap (delete + create in a single request). Every query still carries
the ``tenant_id`` filter, and the sparse leg sends it as its IDF corpus
(``params.idf.corpus``, Qdrant 1.19+) so IDF is computed over the tenant only.

Cluster settings (:class:`ClusterOptions`): shard number, replication factor
and write consistency factor are fixed when a version's collection is
created; reads carry a read consistency and writes a write ordering. Transient
failures (transport errors, timeouts, 5xx, 429) are retried with capped
exponential backoff and jitter: a rolling restart of one Qdrant node must not
turn into failed queries. Everything is safe to retry: point ids are
deterministic, deletes are by filter and the alias swap is one atomic request.

Searches run the backend-neutral plan of ``query_plan.py``; this module only
translates it (and the filters) into qdrant-client types.

``QdrantClient(":memory:")`` runs this same code in tests; it is brute force
and single-process, so it is for small data only.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

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

_LAYOUT_KEY = "fathom_layout"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterOptions:
    """How collections are laid out on a Qdrant cluster and how reads/writes are acknowledged.

    ``None`` leaves a value to the server's default. ``read_consistency`` is
    ``majority``/``quorum``/``all`` or a replica count; ``write_ordering`` is
    ``weak``/``medium``/``strong`` (``medium`` routes writes through the shard
    leader when there is one, so a document's delete-old-version follows its
    upsert on every replica).
    """

    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    read_consistency: str | int | None = None
    write_ordering: str | None = None
    retries: int = 3
    backoff_s: float = 0.1
    backoff_max_s: float = 2.0
    # No retry starts once a call has taken this long: a hung node must not hold a query for
    # timeout x (retries + 1); the caller hears StoreUnavailable (503) after one timeout instead.
    retry_budget_s: float = 3.0

    def read_kw(self) -> dict[str, Any]:
        c = self.read_consistency
        if c is None:
            return {}
        return {"consistency": int(c) if str(c).isdigit() else qm.ReadConsistencyType(str(c))}

    def write_kw(self) -> dict[str, Any]:
        return {} if self.write_ordering is None else {"ordering": qm.WriteOrdering(self.write_ordering)}


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the request may succeed on another try (transport trouble, overload, a node restarting)."""
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code is not None and (exc.status_code >= 500 or exc.status_code == 429)
    return isinstance(exc, (ResponseHandlingException, ConnectionError, TimeoutError, httpx.TransportError))


def _condition(c: Condition) -> qm.FieldCondition:
    if c.any_of is not None:
        return qm.FieldCondition(key=c.key, match=qm.MatchAny(any=list(c.any_of)))
    return qm.FieldCondition(key=c.key, match=qm.MatchValue(value=c.value))


def _filter(spec: FilterSpec) -> qm.Filter:
    return qm.Filter(must=[_condition(c) for c in spec.must],
                     must_not=[_condition(c) for c in spec.must_not] or None)


def _leg(leg: Leg) -> tuple[Any, qm.SearchParams]:
    if isinstance(leg, DenseLeg):
        return leg.vector, qm.SearchParams(hnsw_ef=leg.hnsw_ef, exact=leg.exact)
    sparse = qm.SparseVector(indices=leg.vector.indices, values=leg.vector.values)
    return sparse, qm.SearchParams(idf=qm.IdfCorpusParams(corpus=_filter(leg.idf_corpus)))


def _query_points_kw(query: QueryPlan) -> dict[str, Any]:
    """The plan as ``query_points`` arguments: a single leg is the query; two are prefetches under the fusion."""
    flt = _filter(query.filter)
    if query.single is not None:
        q, params = _leg(query.single)
        return {"query": q, "using": query.single.using, "query_filter": flt, "search_params": params,
                "limit": query.limit}
    assert query.fusion is not None
    prefetch = [qm.Prefetch(query=q, using=leg.using, filter=flt, limit=leg.limit, params=params)
                for leg in query.legs for q, params in [_leg(leg)]]
    fusion = (qm.RrfQuery(rrf=qm.Rrf(k=query.fusion.rrf_k)) if query.fusion.kind == "rrf"
              else qm.FusionQuery(fusion=qm.Fusion.DBSF))
    return {"prefetch": prefetch, "query": fusion, "query_filter": flt, "limit": query.limit}


class ServerStore:
    """:class:`~fathom.retrieval.store.contract.VectorStore` on a Qdrant server (or local mode in tests)."""

    def __init__(self, client: QdrantClient, *, prefix: str = "fathom", hnsw_m: int = 16, hnsw_ef_construct: int = 100,
                 cluster: ClusterOptions | None = None):
        self.client = client
        self.prefix = prefix
        self._hnsw = (hnsw_m, hnsw_ef_construct)
        self.cluster = cluster or ClusterOptions()
        self._read = self.cluster.read_kw()
        self._write = self.cluster.write_kw()

    @classmethod
    def from_url(cls, url: str, *, api_key: str | None = None, timeout_s: float = 5.0, **kw: Any) -> "ServerStore":
        client = (QdrantClient(location=":memory:") if url == ":memory:"
                  else QdrantClient(url=url, api_key=api_key, timeout=max(1, round(timeout_s))))
        return cls(client, **kw)

    # --- names ------------------------------------------------------------------
    def _alias(self, tenant: Tenant) -> str:
        return f"{self.prefix}__{tenant.id}__live"

    def _collection(self, ref: IndexRef) -> str:
        return f"{self.prefix}__{ref.tenant.id}__v{ref.version}"

    def _parse(self, name: str) -> tuple[str, int] | None:
        """``(tenant, version)`` of one of our collection names, else None (split from the right: see the module doc)."""
        head = f"{self.prefix}__"
        if not name.startswith(head) or "__v" not in name:
            return None
        tenant, _, version = name[len(head):].rpartition("__v")
        if not version.isdigit():
            return None
        try:
            return Tenant(tenant).id, int(version)
        except ValueError:
            return None

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one client call: retry transient failures, map the rest to IndexNotFound / StoreUnavailable."""
        attempt, started = 0, time.monotonic()
        while True:
            try:
                return fn(*args, **kwargs)
            except (ValueError, KeyError) as exc:   # local mode raises these for unknown collections
                raise IndexNotFound(str(exc)) from exc
            except Exception as exc:
                if "not found" in str(exc).lower() or "doesn't exist" in str(exc).lower():
                    raise IndexNotFound(str(exc)) from exc
                delay = min(self.cluster.backoff_max_s, self.cluster.backoff_s * 2 ** attempt)
                delay *= 0.5 + random.random() / 2   # jitter: replicas of the API must not retry in lockstep
                spent = time.monotonic() - started
                if (attempt >= self.cluster.retries or not is_transient(exc)
                        or spent + delay > self.cluster.retry_budget_s):
                    raise StoreUnavailable(f"qdrant: {exc}") from exc
                attempt += 1
                log.warning("qdrant %s failed (%s), retry %d/%d in %.2fs", getattr(fn, "__name__", "call"),
                            type(exc).__name__, attempt, self.cluster.retries, delay)
                time.sleep(delay)

    # --- versions -------------------------------------------------------------------
    def create_index(self, ref: IndexRef, layout: IndexLayout) -> None:
        name = self._collection(ref)
        if self._call(self.client.collection_exists, name):
            raise FileExistsError(f"index {ref.tenant}/v{ref.version} already exists")
        m, ef = self._hnsw
        vectors = {DENSE: qm.VectorParams(size=layout.dense_dim, distance=qm.Distance.COSINE)}
        if layout.rerank_dim:
            vectors[RERANK] = qm.VectorParams(size=layout.rerank_dim, distance=qm.Distance.COSINE,
                                              hnsw_config=qm.HnswConfigDiff(m=0))
        self._call(
            self.client.create_collection, name,
            vectors_config=vectors,
            sparse_vectors_config={SPARSE: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
            hnsw_config=qm.HnswConfigDiff(m=m, ef_construct=ef),
            replication_factor=self.cluster.replication_factor,
            shard_number=self.cluster.shard_number,
            write_consistency_factor=self.cluster.write_consistency_factor,
            metadata={_LAYOUT_KEY: layout.to_json()},
        )
        self._call(self.client.create_payload_index, name, "tenant_id",
                   field_schema=qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD, is_tenant=True))
        self._call(self.client.create_payload_index, name, "document_id",
                   field_schema=qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD))

    def layout(self, ref: IndexRef) -> IndexLayout:
        info = self._call(self.client.get_collection, self._collection(ref))
        meta = (info.config.metadata or {}).get(_LAYOUT_KEY)
        if meta:
            return IndexLayout.from_json(meta)
        vectors = info.config.params.vectors
        return IndexLayout(dense_dim=vectors[DENSE].size, rerank_dim=vectors[RERANK].size if RERANK in vectors else None)

    def live_version(self, tenant: Tenant) -> int | None:
        alias = self._alias(tenant)
        aliases = self._call(self.client.get_aliases).aliases
        for a in aliases:
            if a.alias_name == alias:
                parsed = self._parse(a.collection_name)
                return parsed[1] if parsed else None
        return None

    def activate(self, ref: IndexRef) -> int | None:
        previous = self.live_version(ref.tenant)
        if previous == ref.version:
            return previous
        if not self._call(self.client.collection_exists, self._collection(ref)):
            raise IndexNotFound(f"no index {ref.tenant}/v{ref.version}")
        alias = self._alias(ref.tenant)
        ops: list[Any] = []
        if previous is not None:
            ops.append(qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias)))
        ops.append(qm.CreateAliasOperation(create_alias=qm.CreateAlias(collection_name=self._collection(ref), alias_name=alias)))
        self._call(self.client.update_collection_aliases, change_aliases_operations=ops)
        return previous

    def versions(self, tenant: Tenant) -> list[int]:
        out = []
        for c in self._call(self.client.get_collections).collections:
            parsed = self._parse(c.name)
            if parsed and parsed[0] == tenant.id:
                out.append(parsed[1])
        return sorted(out)

    def tenants(self) -> list[Tenant]:
        names = {self._parse(c.name) for c in self._call(self.client.get_collections).collections}
        return [Tenant(t) for t in sorted({p[0] for p in names if p})]

    def drop_index(self, ref: IndexRef) -> None:
        if self.live_version(ref.tenant) == ref.version:
            raise ValueError(f"refusing to drop the live index {ref.tenant}/v{ref.version}")
        self._call(self.client.delete_collection, self._collection(ref))

    # --- writes -------------------------------------------------------------------
    def upsert(self, ref: IndexRef, points: Sequence[ChunkPoint]) -> None:
        if not points:
            return
        structs = []
        for p in points:
            if p.payload.get("tenant_id") != ref.tenant.id:
                raise ValueError("point payload tenant_id does not match the index tenant")
            vec: dict[str, Any] = {DENSE: p.dense.astype(np.float32).tolist(),
                                   SPARSE: qm.SparseVector(indices=p.sparse.indices, values=p.sparse.values)}
            if p.rerank is not None:
                vec[RERANK] = p.rerank.astype(np.float32).tolist()
            structs.append(qm.PointStruct(id=p.id, vector=vec, payload=p.payload))
        self._call(self.client.upsert, self._collection(ref), points=structs, wait=True, **self._write)

    def delete_document(self, ref: IndexRef, document_id: str, *, keep_version: int | None = None) -> None:
        flt = _filter(document_filter(ref.tenant, document_id, keep_version))
        self._call(self.client.delete, self._collection(ref), points_selector=qm.FilterSelector(filter=flt), wait=True,
                   **self._write)

    def optimize(self, ref: IndexRef) -> None:
        """The server optimises in the background; nothing to do."""

    # --- reads ------------------------------------------------------------------------
    def _target(self, tenant: Tenant, version: int | None) -> str:
        if version is not None:
            return self._collection(IndexRef(tenant, version))
        if self.live_version(tenant) is None:
            raise IndexNotFound(f"tenant {tenant} has no index yet")
        return self._alias(tenant)

    def search(self, request: SearchRequest) -> list[Hit]:
        query = plan(request)
        target = self._target(query.tenant, query.version)
        if not query.legs:
            return []
        res = self._call(self.client.query_points, target, **_query_points_kw(query), with_payload=True, **self._read)
        return tenant_payload_guard(query.tenant, [to_hit(p.id, p.score, p.payload, p.vector) for p in res.points])

    def scroll(self, ref: IndexRef, *, document_id: str | None = None, with_vectors: tuple[str, ...] = (),
               batch: int = 256) -> Iterator[Hit]:
        spec = document_filter(ref.tenant, document_id) if document_id else tenant_filter(ref.tenant)
        offset = None
        while True:
            records, offset = self._call(self.client.scroll, self._collection(ref), scroll_filter=_filter(spec),
                                         limit=batch, offset=offset, with_payload=True,
                                         with_vectors=list(with_vectors) or False, **self._read)
            for r in records:
                yield to_hit(r.id, 0.0, r.payload, r.vector)
            if offset is None:
                return

    def fetch_vectors(self, ref: IndexRef, ids: Sequence[str], names: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
        if not ids or not names:
            return {}
        records = self._call(self.client.retrieve, self._collection(ref), ids=list(ids), with_payload=["tenant_id"],
                             with_vectors=list(names), **self._read)
        return {str(r.id): to_hit(r.id, 0.0, None, r.vector).vectors for r in records
                if (r.payload or {}).get("tenant_id") == ref.tenant.id}

    def count(self, ref: IndexRef, *, document_id: str | None = None) -> int:
        spec = document_filter(ref.tenant, document_id) if document_id else tenant_filter(ref.tenant)
        return self._call(self.client.count, self._collection(ref), count_filter=_filter(spec), exact=True).count

    def size_bytes(self, ref: IndexRef) -> int | None:
        """Not exposed by the server API per collection; reported as unknown."""
        return None

    def describe(self, ref: IndexRef) -> dict[str, Any]:
        name = self._collection(ref)
        info = self._call(self.client.get_collection, name)
        params = info.config.params
        vectors = params.vectors if isinstance(params.vectors, dict) else {}
        return {
            "backend": "server", "collection": name, "alias": self._alias(ref.tenant),
            "live": self.live_version(ref.tenant) == ref.version,
            "vectors": {k: {"size": v.size, "distance": str(v.distance.value)} for k, v in vectors.items()},
            "sparse": {k: {"modifier": None if v.modifier is None else str(v.modifier.value)}
                       for k, v in (params.sparse_vectors or {}).items()},
            "shard_number": params.shard_number, "replication_factor": params.replication_factor,
            "write_consistency_factor": params.write_consistency_factor,
            # Local mode keeps no payload schema; a server reports each index (tenant_id with is_tenant).
            "payload_indexes": {k: v.model_dump(exclude_none=True) for k, v in (info.payload_schema or {}).items()},
        }

    def ping(self) -> None:
        try:
            self.client.get_collections()
        except Exception as exc:
            raise StoreUnavailable(f"qdrant unreachable: {exc}") from exc

    def close(self) -> None:
        self.client.close()
