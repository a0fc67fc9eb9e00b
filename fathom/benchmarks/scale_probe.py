"""Query-side measurements of a built store, run in a fresh process (``python -m fathom.benchmarks.scale_probe SPEC OUT``).

Fresh, because the memory figure must be what a serving process holds for
those shards (mmapped segments it touched, open shard handles, the model
session) and not the builder's leftovers, and because a first query after
opening is what a restarted server pays.

Measured, sequentially unless said otherwise, on real test queries:

* store-only latency of the served hybrid request (dense + BM25 prefetch,
  RRF) and of each leg alone, with precomputed query vectors;
* the pipeline's hybrid latency (query embedding included, no reranker: the
  scale corpus has no mpnet vectors), sequential and with a thread pool;
* recall@k of the dense leg's HNSW search against exact search, per ``ef``.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from fathom.retrieval.ir_metrics import percentile
from fathom.retrieval.bm25 import Bm25Encoder
from fathom.retrieval.store.contract import Mode, SearchRequest, VectorStore
from fathom.retrieval.tenancy import Tenant


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    state_dir: str                  # settings.state_dir of the built store
    tenants: list[str]
    queries: list[str]
    hnsw_m: int
    hnsw_ef_construct: int
    hnsw_ef: int
    efs: list[int]                  # recall sweep of the dense leg
    recall_queries: int = 100
    recall_k: int = 100
    threads: int = 4
    top_k: int = 10
    prefetch_limit: int = 200
    seed: int = 13


def rss_mb() -> float:
    return round(psutil.Process().memory_info().rss / 2**20, 1)


def _stats(lat: Sequence[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(lat, 50), 2), "p95_ms": round(percentile(lat, 95), 2),
            "p99_ms": round(percentile(lat, 99), 2), "max_ms": round(max(lat, default=0.0), 2)}


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def dense_recall(store: VectorStore, pairs: Sequence[tuple[Tenant, np.ndarray]], efs: Sequence[int],
                 k: int) -> dict[str, Any]:
    """Recall@k of HNSW (per ef) against exact search, for the dense leg as served (tenant-filtered)."""
    def ids(tenant: Tenant, vec: np.ndarray, *, ef: int | None = None, exact: bool = False) -> list[str]:
        req = SearchRequest(tenant=tenant, mode="dense", limit=k, dense=vec, hnsw_ef=ef, exact=exact)
        return [h.id for h in store.search(req)]

    exact_lat: list[float] = []
    truth = []
    for tenant, vec in pairs:
        t0 = time.perf_counter()
        truth.append(set(ids(tenant, vec, exact=True)))
        exact_lat.append(_ms(t0))
    out: dict[str, Any] = {"k": k, "queries": len(pairs), "exact": _stats(exact_lat), "ef": {}}
    for ef in efs:
        recalls, lat = [], []
        for (tenant, vec), expected in zip(pairs, truth):
            t0 = time.perf_counter()
            got = ids(tenant, vec, ef=ef)
            lat.append(_ms(t0))
            recalls.append(len(expected & set(got)) / max(len(expected), 1))
        out["ef"][str(ef)] = {"recall": round(float(np.mean(recalls)), 4),
                              "recall_min": round(float(np.min(recalls)), 4), **_stats(lat)}
    return out


def probe(spec: ProbeSpec) -> dict[str, Any]:
    from fathom.retrieval.components import Models, build_pipeline, open_store
    from fathom.retrieval.models.embedder import load_embedder
    from fathom.retrieval.models.specs import MINILM
    from fathom.retrieval.query_pipeline import RetrievalQuery
    from fathom.service.core.config import get_settings

    base = get_settings()
    settings = base.model_copy(update={
        "state_dir": Path(spec.state_dir), "registry_url": None,
        "store": base.store.model_copy(update={"hnsw_m": spec.hnsw_m, "hnsw_ef_construct": spec.hnsw_ef_construct,
                                               "hnsw_ef": spec.hnsw_ef}),
        "rerank": base.rerank.model_copy(update={"kind": "none"}),
        "retrieval": base.retrieval.model_copy(update={"prefetch_limit": spec.prefetch_limit})})
    embedder = load_embedder(MINILM, settings)
    vectors = embedder.embed(spec.queries)
    rss_before = rss_mb()
    store = open_store(settings)
    rng = random.Random(spec.seed)
    tenants = [Tenant(t) for t in spec.tenants]
    route = [tenants[rng.randrange(len(tenants))] for _ in spec.queries]
    bm25 = Bm25Encoder()
    sparse = [bm25.encode_query(q) for q in spec.queries]

    def search(i: int, mode: Mode, tenant: Tenant | None = None) -> float:
        t0 = time.perf_counter()
        store.search(SearchRequest(tenant=tenant or route[i], mode=mode, limit=spec.top_k, dense=vectors[i],
                                   sparse=sparse[i], prefetch_limit=spec.prefetch_limit, hnsw_ef=spec.hnsw_ef))
        return _ms(t0)

    t0 = time.perf_counter()
    first = [search(0, "hybrid", t) for t in tenants]   # opens every shard (lazily, on its first query)
    out: dict[str, Any] = {"spec": {k: v for k, v in asdict(spec).items() if k != "queries"},
                           "queries": len(spec.queries), "open_s": round(time.perf_counter() - t0, 3),
                           "first_query": _stats(first), "open_shards": len(tenants)}
    warm = range(min(10, len(spec.queries)))   # untimed: page in what the queries touch
    for mode in ("hybrid", "dense", "bm25"):
        for i in warm:
            search(i, mode)
        out[f"search_{mode}"] = _stats([search(i, mode) for i in range(len(spec.queries))])
    pipeline = build_pipeline(settings, store, Models(dense=embedder))

    def retrieve(i: int) -> float:
        t0 = time.perf_counter()
        pipeline.retrieve(RetrievalQuery(route[i], spec.queries[i], top_k=spec.top_k, mode="hybrid", rerank=False))
        return _ms(t0)

    for i in warm:
        retrieve(i)
    seq = [retrieve(i) for i in range(len(spec.queries))]
    out["pipeline_hybrid"] = {**_stats(seq), "qps": round(len(seq) / (sum(seq) / 1000.0), 2)}
    t0 = time.perf_counter()
    with ThreadPoolExecutor(spec.threads) as pool:
        conc = list(pool.map(retrieve, range(len(spec.queries))))
    out[f"pipeline_hybrid_threads{spec.threads}"] = {**_stats(conc), "qps": round(len(conc) / (_ms(t0) / 1000.0), 2)}
    n = min(spec.recall_queries, len(spec.queries))
    out["dense_recall"] = dense_recall(store, [(route[i], vectors[i]) for i in range(n)], spec.efs, spec.recall_k)
    out["rss_mb"] = rss_mb()
    out["rss_store_mb"] = round(out["rss_mb"] - rss_before, 1)
    store.close()
    return out


def main(argv: list[str]) -> int:
    spec = ProbeSpec(**json.loads(Path(argv[0]).read_text()))
    Path(argv[1]).write_text(json.dumps(probe(spec), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
