"""How the embedded engine's costs grow with corpus size and with the number of tenants.

``fathom bench scale`` (or ``python -m fathom.benchmarks.scale``) grows a synthetic
corpus from the real SciFact + CACM chunks (:mod:`fathom.benchmarks.synth`) and, for
each size, writes it straight through the store (Edge upserts in large
batches, the way a bulk reindex writes), runs ``optimize()`` (HNSW build; it
blocks, so it is timed on its own), and then measures queries in a fresh
process (:mod:`fathom.benchmarks.scale_probe`). Reported per point:

* ``ingest_chunks_per_s`` - chunks / (upsert + flush + optimize) seconds: the
  store's share of ingesting. Generating the synthetic vectors stands in for
  embedding and is excluded (embedding throughput is ``fathom bench ingest``'s);
* ``disk_mb`` (allocated blocks of the shard folders), ``rss_mb`` (the probe
  process after its queries: model session + open shards);
* ``p95_ms`` - the pipeline's hybrid request (query embedding, dense + BM25
  prefetch, fusion, guard; no reranker, as the scale corpus has no mpnet
  vectors), sequential; plus the store-only figures and dense-leg recall;
* a plain rank-bm25 baseline over the same synthetic token lists, up to
  ``bm25_max_chunks`` (its index is a Python dict per chunk: at 1M it needs
  several GB and seconds per query).

Sizes are single-tenant (the worst case for one query). ``tenant_splits``
spreads ``tenant_total`` chunks over that many tenants (one shard each) and
measures the same things with each query sent to a random tenant.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fathom.benchmarks.datasets import load_beir
from fathom.benchmarks.load import shuffled_queries
from fathom.retrieval.ir_metrics import percentile
from fathom.benchmarks.scale_probe import ProbeSpec, rss_mb
from fathom.benchmarks.synth import BaseCorpus, Perturbation, Synthesizer, load_base, mean_copy_cosine
from fathom.retrieval.bm25 import tokenize
from fathom.service.core.config import Settings
from fathom.retrieval.store.contract import IndexRef
from fathom.retrieval.store.edge_store import EdgeStore
from fathom.retrieval.tenancy import Tenant
from fathom.benchmarks.config import data_dir

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ScaleOptions:
    sizes: tuple[int, ...] = (16_000, 100_000, 1_000_000)
    tenant_total: int = 1_000_000
    tenant_splits: tuple[int, ...] = (10, 100)
    datasets: tuple[str, ...] = ("scifact", "cacm")
    queries: int = 300               # SciFact test queries (shuffled; cycled when asked for more)
    recall_queries: int = 100
    efs: tuple[int, ...] = (64, 128, 256)
    threads: int = 4                 # the probe's concurrent pipeline run
    batch: int = 4096                # points per upsert
    bm25_max_chunks: int = 100_000
    bm25_queries: int = 100
    perturbation: Perturbation = Perturbation()
    workdir: Path | None = None      # default: a temp folder, removed at the end
    base_dir: Path | None = None     # where the real corpora are ingested (kept; default <home>/bench/scale-base)
    probe_timeout_s: float = 3600.0


@dataclass
class Built:
    """Build figures of one store (one or many tenants)."""

    chunks: int
    tenants: list[str]
    figures: dict[str, Any] = field(default_factory=dict)


def _split(total: int, parts: int) -> list[tuple[int, int]]:
    edges = [total * i // parts for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


def build_store(state_dir: Path, synth: Synthesizer, settings: Settings, total: int, tenants: int, batch: int,
                log: Log) -> Built:
    """Write ``total`` synthetic chunks into ``tenants`` shards, flush and optimize each; time every step."""
    store = EdgeStore(state_dir / "edge", hnsw_m=settings.store.hnsw_m,
                      hnsw_ef_construct=settings.store.hnsw_ef_construct)
    names = [f"scale-{tenants}-{i}" for i in range(tenants)] if tenants > 1 else ["scale"]
    gen_s = write_s = optimize_s = 0.0
    disk = 0
    refs = []
    try:
        for name, (lo, hi) in zip(names, _split(total, tenants)):
            ref = IndexRef(Tenant(name), 1)
            store.create_index(ref, synth.layout())
            store.activate(ref)
            refs.append(ref)
            for start in range(lo, hi, batch):
                t0 = time.perf_counter()
                points = synth.points(name, start, min(hi, start + batch))
                t1 = time.perf_counter()
                store.upsert(ref, points)
                write_s += time.perf_counter() - t1
                gen_s += t1 - t0
            t0 = time.perf_counter()
            store.flush(ref)
            write_s += time.perf_counter() - t0
            if tenants == 1 or (len(refs) % max(1, tenants // 10) == 0):
                log(f"    wrote {hi:,}/{total:,} chunks ({write_s:.0f} s writing, {gen_s:.0f} s generating)")
        for ref in refs:
            t0 = time.perf_counter()
            store.optimize(ref)
            optimize_s += time.perf_counter() - t0
            disk += store.size_bytes(ref) or 0
        log(f"    optimized in {optimize_s:.0f} s")
        builder_rss = rss_mb()
    finally:
        store.close()
    return Built(total, names, {
        "chunks": total, "tenants": tenants, "generate_s": round(gen_s, 1), "write_s": round(write_s, 1),
        "upsert_chunks_per_s": round(total / write_s, 1) if write_s else None, "optimize_s": round(optimize_s, 1),
        "ingest_chunks_per_s": round(total / (write_s + optimize_s), 1), "disk_mb": round(disk / 2**20, 1),
        "builder_rss_mb": builder_rss})


def run_probe(state_dir: Path, built: Built, queries: list[str], settings: Settings,
              opts: ScaleOptions) -> dict[str, Any]:
    """Query measurements in a fresh process (see :mod:`fathom.benchmarks.scale_probe`)."""
    spec = ProbeSpec(state_dir=str(state_dir), tenants=built.tenants, queries=queries, hnsw_m=settings.store.hnsw_m,
                     hnsw_ef_construct=settings.store.hnsw_ef_construct, hnsw_ef=settings.store.hnsw_ef,
                     efs=list(opts.efs), recall_queries=opts.recall_queries, threads=opts.threads,
                     prefetch_limit=settings.retrieval.prefetch_limit)
    spec_path, out_path = state_dir / "probe-spec.json", state_dir / "probe-out.json"
    spec_path.write_text(json.dumps(asdict(spec)))
    env = {**os.environ, "FATHOM_HOME": str(settings.home.resolve()), "DO_NOT_TRACK": "1"}
    subprocess.run([sys.executable, "-m", "fathom.benchmarks.scale_probe", str(spec_path), str(out_path)], check=True,
                   cwd=Path(__file__).resolve().parent.parent, env=env, timeout=opts.probe_timeout_s)
    return json.loads(out_path.read_text())


def rank_bm25_figures(token_lists: list[list[str]], queries: Sequence[str], k1: float, b: float) -> dict[str, Any]:
    """Plain rank_bm25.BM25Okapi over the same token lists, top 100 per query, in-process and sequential."""
    from rank_bm25 import BM25Okapi

    t0 = time.perf_counter()
    bm25 = BM25Okapi(token_lists, k1=k1, b=b)
    build_s = time.perf_counter() - t0
    lat, rankings = [], []
    for q in queries:
        t0 = time.perf_counter()
        scores = bm25.get_scores(tokenize(q))
        top = np.argpartition(-scores, min(100, len(scores) - 1))[:100]
        rankings.append(top[np.argsort(-scores[top])])   # the ranked top 100 a retriever hands back
        lat.append((time.perf_counter() - t0) * 1000.0)
    return {"qps": round(len(lat) / (sum(lat) / 1000.0), 2), "p50_ms": round(percentile(lat, 50), 2),
            "p95_ms": round(percentile(lat, 95), 2), "queries": len(lat), "build_s": round(build_s, 1)}


def summarise(built: Built, probe: dict[str, Any], baseline: dict[str, Any] | None, threads: int) -> dict[str, Any]:
    """The point's row: the issue's three figures first, then the rest."""
    pipe, conc = probe["pipeline_hybrid"], f"qps_threads{threads}"
    row: dict[str, Any] = {
        "p95_ms": pipe["p95_ms"], "ingest_chunks_per_s": built.figures["ingest_chunks_per_s"],
        "rss_mb": probe["rss_mb"], "p50_ms": pipe["p50_ms"], "qps": pipe["qps"],
        conc: probe[f"pipeline_hybrid_threads{threads}"]["qps"],
        **{f"search_{m}": probe[f"search_{m}"] for m in ("hybrid", "dense", "bm25")},
        "dense_recall": probe["dense_recall"], "rss_store_mb": probe["rss_store_mb"], "open_s": probe["open_s"],
        "open_shards": probe["open_shards"], "first_query": probe["first_query"], "build": built.figures,
        "load_avg_1m": round(os.getloadavg()[0], 2)}
    if baseline is not None:
        row["rank_bm25"] = baseline
        row["hybrid_vs_rank_bm25_qps"] = round(pipe["qps"] / baseline["qps"], 2)
        row[f"hybrid_threads{threads}_vs_rank_bm25_qps"] = round(row[conc] / baseline["qps"], 2)
    return row


def run_scale(settings: Settings, opts: ScaleOptions, log: Log = print) -> dict[str, Any]:
    """Every size and every tenant split; returns ``{"scale": {...}, "scale_tenants": {...}, "_scale_meta": {...}}``."""
    started = time.time()
    base_dir = opts.base_dir or settings.home.resolve() / "bench" / "scale-base"
    log(f"base corpus: {', '.join(opts.datasets)} (ingested into {base_dir}, reused when present)")
    base: BaseCorpus = load_base(settings, [data_dir() / d for d in opts.datasets], base_dir, log)
    synth = Synthesizer(base, opts.perturbation)
    scifact = load_beir(data_dir() / "scifact", "test")
    texts = shuffled_queries(scifact.judged_queries, opts.perturbation.seed)
    queries = [texts[i % len(texts)] for i in range(opts.queries)]
    out: dict[str, Any] = {"scale": {}, "scale_tenants": {}}
    plan = [(n, 1) for n in opts.sizes] + [(opts.tenant_total, k) for k in opts.tenant_splits]
    with tempfile.TemporaryDirectory(prefix="fathom-bench-scale-", dir=opts.workdir) as tmp:
        for total, tenants in plan:
            state_dir = Path(tmp) / f"n{total}-t{tenants}"
            log(f"  {total:,} chunks in {tenants} tenant(s): building")
            try:
                built = build_store(state_dir, synth, settings, total, tenants, opts.batch, log)
                log(f"    {json.dumps(built.figures)}")
                probe = run_probe(state_dir, built, queries, settings, opts)
                baseline = None
                if tenants == 1 and total <= opts.bm25_max_chunks:
                    baseline = rank_bm25_figures(synth.token_lists(0, total), queries[:opts.bm25_queries],
                                                 settings.retrieval.bm25_k1, settings.retrieval.bm25_b)
                row = summarise(built, probe, baseline, opts.threads)
            finally:
                shutil.rmtree(state_dir, ignore_errors=True)   # GBs at 1M: never keep two sizes on disk
            if tenants == 1:
                out["scale"][str(total)] = row
            else:
                out["scale_tenants"][f"{total}/{tenants}"] = row
            log(f"    p95 {row['p95_ms']} ms, search p95 {row['search_hybrid']['p95_ms']} ms, "
                f"ingest {row['ingest_chunks_per_s']} chunks/s, rss {row['rss_mb']} MB, "
                f"disk {row['build']['disk_mb']} MB (load {row['load_avg_1m']})")
    out["_scale_meta"] = {
        "base_chunks": len(base), "datasets": list(opts.datasets), "perturbation": asdict(opts.perturbation),
        "mean_copy_cosine": round(mean_copy_cosine(synth), 4), "queries": len(queries),
        "hnsw": {"m": settings.store.hnsw_m, "ef_construct": settings.store.hnsw_ef_construct,
                 "ef": settings.store.hnsw_ef},
        "prefetch_limit": settings.retrieval.prefetch_limit, "batch": opts.batch,
        "p95": "pipeline hybrid, no reranker, query embedding included, sequential, in a fresh process",
        "seconds": round(time.time() - started, 1)}
    return out
