"""Retrieval quality on a judged BEIR-layout dataset, with a rank-bm25 baseline from the same run.

``fathom bench quality --dataset PATH --json OUT`` ingests the corpus into a
fresh tenant through the real ingestion pipeline (chunking, embedding, BM25
vectors) on the embedded engine, runs every judged query of the split in each
mode, and reports nDCG@10, R@10, R@100, MRR@10 and per-stage latency.

Evaluation is per document: a document's rank is that of its best chunk
(``unique_documents``). Guard thresholds are set to zero here so that the
metrics measure ranking alone; the guard has its own tests.
"""

from __future__ import annotations

import json
import random
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fathom.benchmarks.datasets import BeirDataset, load_beir
from fathom.benchmarks.guard_bench import guard_report
from fathom.benchmarks.peak_rss import PeakRss
from fathom.retrieval.ir_metrics import evaluate, percentile
from fathom.ingest.wiring import build_ingest
from fathom.ingest.ingest_pipeline import IngestItem
from fathom.ingest.registry import Registry
from fathom.retrieval.bm25 import tokenize
from fathom.retrieval.components import Models, build_pipeline, load_models, open_store, rerank_sizes
from fathom.retrieval.guard import GuardPolicy
from fathom.retrieval.models.embed_cache import EmbeddingCache
from fathom.retrieval.query_pipeline import RetrievalPipeline, RetrievalQuery
from fathom.retrieval.rerank.interface import Reranker
from fathom.retrieval.stages import Rerank
from fathom.service.core.config import Settings, get_settings
from fathom.retrieval.store.contract import IndexRef, VectorStore
from fathom.retrieval.tenancy import Tenant

OPEN_POLICY = GuardPolicy(min_confidence=0.0, min_chunk_confidence=0.0)
Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Mode:
    """One row of the table: a first-stage mode, with or without a reranker."""

    name: str
    search: str                     # hybrid | dense | bm25
    reranker: Reranker | None = None


@dataclass
class BenchIndex:
    """A dataset ingested into a fresh tenant, ready to query."""

    dataset: BeirDataset
    settings: Settings
    store: VectorStore
    models: Models
    tenant: Tenant
    ingest_summary: dict[str, Any]
    ingest_seconds: float
    chunks: int
    tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def close(self) -> None:
        self.store.close()
        if self.tmp is not None:
            self.tmp.cleanup()


def raw_items(dataset: BeirDataset, workdir: Path) -> list[IngestItem]:
    """The dataset's original files (``raw/*.tar.gz``), extracted, as file ingests: id = file stem.

    This exercises the real path a user takes (files → unstructured → chunks)
    instead of the pre-extracted ``corpus.jsonl``.
    """
    archives = sorted((dataset.root / "raw").glob("*.tar.gz"))
    if not archives:
        raise FileNotFoundError(f"{dataset.root}/raw has no .tar.gz of original documents")
    for archive in archives:
        with tarfile.open(archive) as tar:
            tar.extractall(workdir, filter="data")
    files = sorted(f for f in workdir.rglob("*") if f.is_file())
    return [IngestItem(document_id=f.stem, path=f, filename=f.name) for f in files]


def build_index(dataset_path: Path, settings: Settings | None = None, *, models: Models | None = None,
                chunker: str | None = None, split: str = "test", log: Log = print,
                max_docs: int | None = None, state_dir: Path | None = None, source: str = "corpus",
                use_cache: bool = True, reingest: bool = False) -> BenchIndex:
    """Ingest a BEIR corpus (``source="corpus"``) or its raw files (``"raw"``) into a fresh tenant.

    The state folder is a throwaway temp dir unless ``state_dir`` is given; a
    kept folder is reused on the next run, where idempotent ingestion finds
    every document unchanged. The embedding cache is shared between runs
    unless ``use_cache`` is off (throughput measurements must be cold).
    ``reingest`` ingests the same items a second time (every document should
    be ``unchanged``, with 0 embeddings computed) and records it in the summary;
    the peak RSS during the first ingest is recorded either way.
    """
    settings = settings or get_settings()
    dataset = load_beir(dataset_path, split)
    tmp = tempfile.TemporaryDirectory(prefix=f"fathom-bench-{dataset.name}-")
    bench_settings = settings.model_copy(update={"state_dir": Path(state_dir or tmp.name) / "state", "registry_url": None})
    models = models or load_models(bench_settings)
    store = open_store(bench_settings)
    registry = Registry(bench_settings.registry)
    cache = EmbeddingCache(settings.home.resolve() / "cache" / "embeddings.sqlite") if use_cache else None
    pipeline = build_ingest(bench_settings, store, registry, models, chunker=chunker, cache=cache)
    name = f"bench-{dataset.name}-{source}-{chunker or settings.ingest.chunker}"
    tenant = Tenant(name.lower()[:60].replace(".", "-"))
    if source == "raw":
        items = raw_items(dataset, Path(tmp.name) / "raw")
    else:
        items = [IngestItem(document_id=d.id, parsed=d.parsed()) for d in dataset.corpus()]
    items = items[:max_docs] if max_docs else items
    t0 = time.perf_counter()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 10 or done == total:
            last[0] = time.perf_counter()
            log(f"  ingested {done}/{total} documents ({time.perf_counter() - t0:.0f} s)")

    cpu0 = time.process_time()
    with PeakRss() as peak:
        report = pipeline.ingest(tenant, items, total=len(items), progress=progress)
        ref = IndexRef(tenant, report.index_version or store.live_version(tenant) or 1)
        t_opt = time.perf_counter()
        store.optimize(ref)
        optimize_s = time.perf_counter() - t_opt
    seconds = time.perf_counter() - t0
    summary = report.summary()
    summary["seconds"]["optimize"] = round(optimize_s, 3)
    summary["cpu_seconds"] = round(time.process_time() - cpu0, 1)   # every thread of this process
    summary["peak_rss_mb"] = peak.mb
    if reingest:
        t1 = time.perf_counter()
        again = pipeline.ingest(tenant, items, total=len(items))
        summary["reingest"] = {"unchanged": again.count("unchanged"), "ok": again.count("ok"),
                               "embeddings_computed": again.embeddings_computed,
                               "seconds": round(time.perf_counter() - t1, 1)}
    if cache is not None:
        summary["embedding_cache"] = {"hits": cache.hits, "misses": cache.misses}
        cache.close()
    registry.close()
    return BenchIndex(dataset, bench_settings, store, models, tenant, summary, seconds, store.count(ref), tmp)


def run_mode(pipeline: RetrievalPipeline, tenant: Tenant, queries: dict[str, str], mode: Mode,
             k: int = 100) -> tuple[dict[str, list[str]], dict[str, list[float]]]:
    """Rank documents for every query; returns the run and per-stage latencies (ms).

    Each query runs twice: once deep (top ``k`` distinct documents) for the
    metrics, once shaped like a production request (top 10 chunks) for the
    latency figures, so the latency is what an API caller would see.
    """
    pipeline.reranker = mode.reranker
    rerank = mode.reranker is not None

    def deep(text: str) -> Any:
        return pipeline.retrieve(RetrievalQuery(tenant, text, top_k=k, mode=mode.search, rerank=rerank,  # type: ignore[arg-type]
                                                unique_documents=True, policy=OPEN_POLICY))

    def timed(text: str) -> Any:
        return pipeline.retrieve(RetrievalQuery(tenant, text, top_k=10, mode=mode.search, rerank=rerank,  # type: ignore[arg-type]
                                                policy=OPEN_POLICY))

    for text in list(queries.values())[:5]:   # warm-up: first runs allocate ORT buffers
        timed(text)
    run: dict[str, list[str]] = {}
    stages: dict[str, list[float]] = {}
    for qid, text in queries.items():
        run[qid] = [c.hit.document_id for c in deep(text).candidates]
        for name, ms in timed(text).timings_ms.items():
            stages.setdefault(name, []).append(ms)
    return run, stages


def rank_bm25_baseline(index: BenchIndex, queries: dict[str, str], k: int = 100) -> tuple[dict[str, list[str]], list[float]]:
    """Plain rank_bm25.BM25Okapi over the same chunks and tokens, in-process; doc score = best chunk."""
    from rank_bm25 import BM25Okapi

    live = index.store.live_version(index.tenant)
    texts, doc_ids = [], []
    for hit in index.store.scroll(IndexRef(index.tenant, live or 1)):
        section = hit.payload.get("section") or ""
        texts.append(tokenize(f"{section}\n{hit.text}" if section else hit.text))
        doc_ids.append(hit.document_id)
    bm25 = BM25Okapi(texts, k1=index.settings.retrieval.bm25_k1, b=index.settings.retrieval.bm25_b)
    ids = np.array(doc_ids)
    run, lat = {}, []
    for qid, text in queries.items():
        t0 = time.perf_counter()
        scores = bm25.get_scores(tokenize(text))
        order = np.argsort(-scores)
        seen: list[str] = []
        for i in order:
            d = ids[i]
            if d not in seen:
                seen.append(str(d))
                if len(seen) == k:
                    break
        lat.append((time.perf_counter() - t0) * 1000)
        run[qid] = seen
    return run, lat


def summarise(run: dict[str, list[str]], qrels: dict[str, dict[str, int]], stages: dict[str, list[float]]) -> dict[str, Any]:
    """Metrics over the queries that were run (a --max-queries sample is not diluted by the rest)."""
    row: dict[str, Any] = {k: round(v, 4) for k, v in evaluate(run, {q: qrels[q] for q in run if q in qrels}).items()}
    total = stages.get("total", [])
    row["p50_ms"] = round(percentile(total, 50), 2)
    row["p95_ms"] = round(percentile(total, 95), 2)
    row["stages"] = {name: {"p50_ms": round(percentile(v, 50), 2), "p95_ms": round(percentile(v, 95), 2)}
                     for name, v in stages.items() if name != "total"}
    return row


def default_modes(pipeline: RetrievalPipeline, reranker: Reranker | None) -> list[Mode]:
    modes = [Mode("bm25", "bm25"), Mode("dense", "dense"), Mode("hybrid", "hybrid")]
    if reranker is not None:
        modes.append(Mode("hybrid+rerank", "hybrid", reranker))
    return modes


def run_quality(dataset_path: Path, settings: Settings | None = None, *, split: str = "test", chunker: str | None = None,
                max_queries: int | None = None, extra_rerankers: Sequence[tuple[str, Reranker]] = (),
                log: Log = print, index: BenchIndex | None = None, state_dir: Path | None = None,
                source: str = "corpus") -> dict[str, Any]:
    settings = settings or get_settings()
    own_index = index is None
    index = index or build_index(dataset_path, settings, chunker=chunker, split=split, log=log, state_dir=state_dir,
                                 source=source)
    try:
        log(f"indexed {index.chunks} chunks in {index.ingest_seconds:.1f} s: {json.dumps(index.ingest_summary)}")
        queries = index.dataset.judged_queries
        if max_queries:
            keys = sorted(queries)
            random.Random(13).shuffle(keys)
            queries = {q: queries[q] for q in keys[:max_queries]}
        pipeline = build_pipeline(index.settings, index.store, index.models)
        rerank_stage = pipeline.stage(Rerank)
        default_reranker, default_cfg = pipeline.reranker, rerank_stage.settings
        results: dict[str, Any] = {}
        for mode in default_modes(pipeline, default_reranker) + [Mode(n, "hybrid", r) for n, r in extra_rerankers]:
            # Each reranker at its own served sizes (its card's, unless the settings name them), as `serve` would.
            depth, max_length = rerank_sizes(index.settings, mode.reranker)
            rerank_stage.settings = default_cfg.model_copy(update={"depth": depth, "max_length": max_length})
            run, stages = run_mode(pipeline, index.tenant, queries, mode)
            results[mode.name] = summarise(run, index.dataset.qrels, stages)
            if mode.reranker is not None:
                results[mode.name].update(reranker=mode.reranker.name, rerank_depth=depth, rerank_max_length=max_length)
            log(f"  {mode.name:<16} nDCG@10 {results[mode.name]['ndcg@10']:.4f}  R@100 {results[mode.name]['recall@100']:.4f}")
        run, lat = rank_bm25_baseline(index, queries)
        results["rank-bm25"] = summarise(run, index.dataset.qrels, {"total": lat})
        policy = GuardPolicy(settings.guard.min_confidence, settings.guard.min_chunk_confidence)
        pipeline.reranker, rerank_stage.settings = default_reranker, default_cfg
        results["_guard"] = {"policy": {"min_confidence": policy.min_confidence,
                                        "min_chunk_confidence": policy.min_chunk_confidence}}
        for name, rerank in (("hybrid", False), ("hybrid+rerank", True)):
            if rerank and default_reranker is None:
                continue
            results["_guard"][name] = guard_report(pipeline, index.tenant, list(queries.values()), policy, rerank)
            log(f"  guard {name}: {results['_guard'][name]}")
        results["_meta"] = {
            "dataset": str(dataset_path), "source": source, "split": split, "queries": len(queries), "chunks": index.chunks,
            "chunker": chunker or settings.ingest.chunker, "ingest": index.ingest_summary,
            "ingest_seconds": round(index.ingest_seconds, 1),
            "ingest_chunks_per_s": round(index.chunks / max(index.ingest_seconds, 1e-9), 1),
            "fusion": settings.retrieval.fusion, "rrf_k": settings.retrieval.rrf_k,
            "prefetch_limit": settings.retrieval.prefetch_limit, "rerank_depth": default_cfg.depth,
        }
        return results
    finally:
        if own_index:
            index.close()


def format_table(results: dict[str, Any]) -> str:
    base = results.get("rank-bm25", {}).get("ndcg@10") or 0.0
    lines = ["| mode | nDCG@10 | vs rank-bm25 | R@10 | R@100 | MRR@10 | P50 ms | P95 ms |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in results.items():
        if name.startswith("_"):
            continue
        ratio = f"{row['ndcg@10'] / base:.3f}x" if base else "-"
        lines.append(f"| {name} | {row['ndcg@10']:.4f} | {ratio} | {row['recall@10']:.4f} | {row['recall@100']:.4f} | "
                     f"{row['mrr@10']:.4f} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} |")
    stage_lines = ["", "| mode | stage | P50 ms | P95 ms |", "|---|---|---|---|"]
    for name, row in results.items():
        for stage, s in (row.get("stages") or {}).items() if not name.startswith("_") else ():
            stage_lines.append(f"| {name} | {stage} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} |")
    return "\n".join(lines + stage_lines)
