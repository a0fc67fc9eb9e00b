"""One hybrid query plan, backend-neutral, built once; each adapter only translates and runs it.

A :class:`~fathom.retrieval.store.contract.SearchRequest` says what the
pipeline wants (mode, vectors, limits, fusion, filters); :func:`plan` turns it
into the query both engines run:

* a **dense leg** (nearest neighbours of the query embedding, HNSW ``ef``),
  and/or a **sparse leg** (BM25 weights, IDF computed over the tenant's points
  only: the leg carries its IDF corpus filter);
* every leg and the final query carry the same **filter**: the tenant
  condition first, then the caller's metadata conditions;
* with two legs, a **fusion** (RRF with its ``k``, or DBSF) over their
  prefetched candidates; with one, that leg is the query.

``edge_store.py`` (Qdrant Edge) and ``server_store.py`` (qdrant-client) hold
only the translations of a plan and a filter into their engine's types (the
split follows qdrant-client: a base interface, a facade per transport, and
conversions); ``tests/contract/test_store_contract.py`` runs the same plans against
both and compares the answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fathom.retrieval.bm25 import SparseVector
from fathom.retrieval.store.contract import DENSE, SPARSE, FusionKind, Hit, SearchRequest
from fathom.retrieval.store.filters import FilterSpec, query_filter, tenant_filter
from fathom.retrieval.tenancy import Tenant


@dataclass(frozen=True, slots=True)
class DenseLeg:
    vector: list[float]
    limit: int
    hnsw_ef: int | None
    exact: bool
    using: str = DENSE


@dataclass(frozen=True, slots=True)
class SparseLeg:
    vector: SparseVector
    limit: int
    idf_corpus: FilterSpec          # IDF statistics over these points only: the tenant's
    using: str = SPARSE


Leg = DenseLeg | SparseLeg


@dataclass(frozen=True, slots=True)
class Fusion:
    kind: FusionKind
    rrf_k: int


@dataclass(frozen=True, slots=True)
class QueryPlan:
    tenant: Tenant
    version: int | None              # None: the live version
    legs: tuple[Leg, ...]            # dense first, then sparse; empty: nothing to search (e.g. only stop words)
    fusion: Fusion | None            # set when there are two legs
    filter: FilterSpec               # on every leg and on the final query; the tenant condition first
    limit: int

    @property
    def single(self) -> Leg | None:
        """The one leg when there is no fusion (that leg is then the query itself)."""
        return self.legs[0] if len(self.legs) == 1 else None


def plan(request: SearchRequest) -> QueryPlan:
    legs: list[Leg] = []
    if request.mode in ("hybrid", "dense"):
        assert request.dense is not None   # SearchRequest checks it
        legs.append(DenseLeg(np.asarray(request.dense, dtype=np.float32).tolist(), request.prefetch_limit,
                             request.hnsw_ef, request.exact))
    if request.mode in ("hybrid", "bm25") and request.sparse is not None and len(request.sparse):
        legs.append(SparseLeg(request.sparse, request.prefetch_limit, tenant_filter(request.tenant)))
    fusion = Fusion(request.fusion, request.rrf_k) if len(legs) > 1 else None
    return QueryPlan(request.tenant, request.version, tuple(legs), fusion,
                     query_filter(request.tenant, request.filter), request.limit)


def to_hit(pid: Any, score: float, payload: Any, vector: Any) -> Hit:
    """A point from either engine as a :class:`Hit` (stored dense/rerank vectors kept, the sparse one not)."""
    vectors = {}
    if isinstance(vector, dict):
        vectors = {k: np.asarray(v, dtype=np.float32) for k, v in vector.items() if k != SPARSE}
    return Hit(id=str(pid), score=float(score), payload=dict(payload or {}), vectors=vectors)
