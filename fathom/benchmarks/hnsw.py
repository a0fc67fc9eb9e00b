"""HNSW parameters on real embeddings: recall@100 of the dense leg against exact search, and what it costs.

``fathom bench hnsw`` builds the dense index for every ``m`` x ``ef_construct``
of the grid, on the real SciFact + CACM chunks (their MiniLM vectors as
ingested) and on a synthetic corpus grown from them (:mod:`fathom.benchmarks.synth`),
and measures, per query-time ``ef``, the recall@k of the tenant-filtered
HNSW search against ``exact=True`` search with the same filter, with the
latency of both. Build time (``optimize()``) and disk are reported per grid
point, since a larger graph costs at every reindex.

Qdrant searches a segment whose vectors are under ``full_scan_threshold`` KB
exactly, whatever the parameters say; such rows show recall 1.0 at every ef,
and that is the real behaviour of the service at that size.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fathom.benchmarks.datasets import load_beir
from fathom.benchmarks.load import shuffled_queries
from fathom.benchmarks.scale import build_store
from fathom.benchmarks.scale_probe import dense_recall
from fathom.benchmarks.synth import Perturbation, Synthesizer, load_base
from fathom.retrieval.models.embedder import load_embedder
from fathom.retrieval.models.specs import MINILM
from fathom.service.core.config import Settings
from fathom.retrieval.store.edge_store import EdgeStore
from fathom.retrieval.tenancy import Tenant
from fathom.benchmarks.config import data_dir

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class HnswOptions:
    ms: tuple[int, ...] = (16, 32)
    ef_constructs: tuple[int, ...] = (100, 200)
    efs: tuple[int, ...] = (64, 128, 200, 256, 512)
    sizes: tuple[int, ...] = (0, 100_000)     # 0: the real chunks only (no synthetic copy)
    queries: int = 200
    k: int = 100
    datasets: tuple[str, ...] = ("scifact", "cacm")
    perturbation: Perturbation = Perturbation()
    base_dir: Path | None = None
    workdir: Path | None = None


def with_hnsw(settings: Settings, m: int, ef_construct: int) -> Settings:
    return settings.model_copy(update={"store": settings.store.model_copy(update={"hnsw_m": m,
                                                                               "hnsw_ef_construct": ef_construct})})


def run_hnsw(settings: Settings, opts: HnswOptions, log: Log = print) -> dict[str, Any]:
    started = time.time()
    base_dir = opts.base_dir or settings.home.resolve() / "bench" / "scale-base"
    base = load_base(settings, [data_dir() / d for d in opts.datasets], base_dir, log)
    synth = Synthesizer(base, opts.perturbation)
    texts = shuffled_queries(load_beir(data_dir() / "scifact", "test").judged_queries, opts.perturbation.seed)
    texts = [texts[i % len(texts)] for i in range(opts.queries)]
    vectors = load_embedder(MINILM, settings).embed(texts)
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fathom-bench-hnsw-", dir=opts.workdir) as tmp:
        for size in opts.sizes:
            total = size or len(base)
            label = "real" if size == 0 else str(size)
            for m in opts.ms:
                for efc in opts.ef_constructs:
                    state = Path(tmp) / f"{label}-m{m}-efc{efc}"
                    log(f"  {label} ({total:,} chunks) m={m} ef_construct={efc}")
                    try:
                        built = build_store(state, synth, with_hnsw(settings, m, efc), total, 1, 4096, log)
                        store = EdgeStore(state / "edge", hnsw_m=m, hnsw_ef_construct=efc)
                        try:
                            tenant = Tenant(built.tenants[0])
                            recall = dense_recall(store, [(tenant, v) for v in vectors], opts.efs, opts.k)
                        finally:
                            store.close()
                    finally:
                        shutil.rmtree(state, ignore_errors=True)
                    key = f"{label}/m{m}/efc{efc}"
                    rows[key] = {"chunks": total, "m": m, "ef_construct": efc,
                                 "optimize_s": built.figures["optimize_s"], "disk_mb": built.figures["disk_mb"],
                                 "recall": recall,
                                 "load_avg_1m": round(os.getloadavg()[0], 2)}
                    log("    " + ", ".join(f"ef {ef}: recall {r['recall']:.4f} p95 {r['p95_ms']:.2f} ms"
                                           for ef, r in recall["ef"].items())
                        + f"; exact p95 {recall['exact']['p95_ms']:.2f} ms; optimize {built.figures['optimize_s']} s")
    return {"hnsw": rows, "_hnsw_meta": {"k": opts.k, "queries": len(texts), "base_chunks": len(base),
                                         "perturbation": asdict(opts.perturbation),
                                         "filter": "tenant_id (is_tenant keyword index), as served",
                                         "seconds": round(time.time() - started, 1)}}
