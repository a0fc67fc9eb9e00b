"""Ingestion benchmark: throughput with per-stage shares, chunker comparison, raw files vs pre-extracted text.

``fathom bench ingest --json OUT`` reports:

* **throughput** — SciFact (5,183 abstracts) and the 81 real-world fixture
  files, ingested cold (no embedding cache) into fresh tenants: documents/s,
  chunks/s and the share of wall time spent parsing, chunking, embedding
  (with the index-time mpnet part broken out) and writing;
* **chunkers** — semantic vs fixed-size chunking on SciFact and CACM: nDCG@10
  and R@100 of bm25 / dense / hybrid (no reranker, so only chunking differs);
* **cacm_raw_vs_corpus** — CACM ingested from its 3,204 original HTML files
  through the file path, against the same collection's ``corpus.jsonl``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fathom.benchmarks.quality import Log, build_index, run_quality
from fathom.ingest.wiring import build_ingest
from fathom.ingest.ingest_pipeline import IngestItem
from fathom.ingest.registry import Registry
from fathom.retrieval.components import load_models, open_store
from fathom.service.core.config import Settings
from fathom.retrieval.tenancy import Tenant

STAGES = ("parse", "chunk", "embed", "write", "optimize")


def _shares(summary: dict[str, Any], total: float) -> dict[str, float]:
    secs = summary["seconds"]
    out = {stage: round(secs.get(stage, 0.0) / total, 4) for stage in STAGES}
    out["embed_rerank"] = round(secs.get("embed_rerank", 0.0) / total, 4)
    return out


def _throughput_row(docs: int, chunks: int, seconds: float, summary: dict[str, Any]) -> dict[str, Any]:
    return {"documents": docs, "chunks": chunks, "seconds": round(seconds, 1),
            "documents_per_s": round(docs / seconds, 2), "chunks_per_s": round(chunks / seconds, 2),
            "share": _shares(summary, seconds), "failed": summary["failed"], "failures": summary["failures"]}


def scifact_throughput(settings: Settings, data_dir: Path, log: Log) -> dict[str, Any]:
    index = build_index(data_dir / "scifact", settings, use_cache=False, log=log)
    try:
        s = index.ingest_summary
        return _throughput_row(s["ok"] + s["failed"], index.chunks, index.ingest_seconds, s)
    finally:
        index.close()


def fixture_throughput(settings: Settings, data_dir: Path, log: Log, tmp: Path) -> dict[str, Any]:
    """The 81 real-world files (PDF, DOCX, HTML, EML, ...): where parsing actually costs something."""
    bench = settings.model_copy(update={"state_dir": tmp / "fixtures", "registry_url": None})
    models = load_models(bench)
    store, registry = open_store(bench), Registry(bench.registry)
    pipeline = build_ingest(bench, store, registry, models)
    files = sorted(f for f in (data_dir / "docs").rglob("*") if f.is_file() and f.name != "MANIFEST.tsv")
    items = [IngestItem(document_id=str(f.relative_to(data_dir / "docs")), path=f, filename=f.name) for f in files]
    t0 = time.perf_counter()
    report = pipeline.ingest(Tenant("bench-fixtures"), items, total=len(items))
    seconds = time.perf_counter() - t0
    log(f"  fixtures: {report.summary()}")
    store.close()
    registry.close()
    return _throughput_row(len(items), report.chunks_written, seconds, report.summary())


def _quality_rows(results: dict[str, Any]) -> dict[str, Any]:
    return {mode: {"ndcg@10": results[mode]["ndcg@10"], "recall@100": results[mode]["recall@100"]}
            for mode in ("bm25", "dense", "hybrid")} | {"chunks": results["_meta"]["chunks"]}


def run_ingest_bench(settings: Settings, data_dir: Path, *, log: Log = print, tmp: Path) -> dict[str, Any]:
    first_stage = settings.model_copy(update={"rerank": settings.rerank.model_copy(update={"kind": "none"})})
    out: dict[str, Any] = {"throughput": {}, "chunkers": {}, "cacm_raw_vs_corpus": {}}
    log("throughput: scifact (cold, no embedding cache)")
    out["throughput"]["scifact"] = scifact_throughput(settings, data_dir, log)
    log("throughput: 81 fixture files")
    out["throughput"]["fixtures"] = fixture_throughput(settings, data_dir, log, tmp)
    for dataset in ("scifact", "cacm"):
        for chunker in ("semantic", "fixed"):
            log(f"chunkers: {dataset} / {chunker}")
            res = run_quality(data_dir / dataset, first_stage, chunker=chunker, log=log)
            out["chunkers"][f"{dataset}/{chunker}"] = _quality_rows(res)
    for source in ("corpus", "raw"):
        log(f"cacm from {source}")
        res = run_quality(data_dir / "cacm", first_stage, source=source, log=log)
        out["cacm_raw_vs_corpus"][source] = _quality_rows(res)
    raw, corpus = out["cacm_raw_vs_corpus"]["raw"], out["cacm_raw_vs_corpus"]["corpus"]
    out["cacm_raw_vs_corpus"]["hybrid_ndcg_delta"] = round(raw["hybrid"]["ndcg@10"] - corpus["hybrid"]["ndcg@10"], 4)
    return out


def format_ingest(results: dict[str, Any]) -> str:
    lines = ["| corpus | docs | chunks | s | docs/s | chunks/s | parse | chunk | embed (mpnet) | write | optimize |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results["throughput"].items():
        sh = r["share"]
        lines.append(f"| {name} | {r['documents']} | {r['chunks']} | {r['seconds']} | {r['documents_per_s']} | "
                     f"{r['chunks_per_s']} | {sh['parse']:.1%} | {sh['chunk']:.1%} | {sh['embed']:.1%} "
                     f"({sh['embed_rerank']:.1%}) | {sh['write']:.1%} | {sh['optimize']:.1%} |")
    lines += ["", "| dataset / chunker | chunks | bm25 nDCG@10 | dense nDCG@10 | hybrid nDCG@10 | hybrid R@100 |",
              "|---|---|---|---|---|---|"]
    for name, r in results["chunkers"].items():
        lines.append(f"| {name} | {r['chunks']} | {r['bm25']['ndcg@10']:.4f} | {r['dense']['ndcg@10']:.4f} | "
                     f"{r['hybrid']['ndcg@10']:.4f} | {r['hybrid']['recall@100']:.4f} |")
    c = results["cacm_raw_vs_corpus"]
    lines += ["", "| CACM source | chunks | bm25 nDCG@10 | hybrid nDCG@10 | hybrid R@100 |", "|---|---|---|---|---|"]
    for source in ("corpus", "raw"):
        r = c[source]
        lines.append(f"| {source} | {r['chunks']} | {r['bm25']['ndcg@10']:.4f} | {r['hybrid']['ndcg@10']:.4f} | "
                     f"{r['hybrid']['recall@100']:.4f} |")
    lines.append(f"\nraw - corpus hybrid nDCG@10: {c['hybrid_ndcg_delta']:+.4f}")
    return "\n".join(lines)
