"""Ingestion benchmark: throughput against the bare encoder, per-stage seconds, memory, and quality per chunker.

``fathom bench ingest --json OUT`` ingests each corpus (SciFact, CACM) cold (no
embedding cache) into a fresh tenant once per chunker (semantic, late, fixed)
and reports, per run:

* **encoder_ratio** - ingest throughput (final chunks / wall seconds of the
  whole ingest, HNSW optimize included) over the bare encoder's passages/s on
  the *same final chunks*, measured right after in the same process with the
  same session (``OnnxEmbedder.embed`` of each chunk's index text: what one
  plain encode per chunk would cost, with nothing else around it). 1.0 would
  be an ingest that costs exactly one encode per stored chunk;
* per-stage seconds (parse, chunk, embed = all encoder time, points = BM25 +
  payloads, write = store + registry, optimize) - with overlapped writes the
  stages run side by side and add up to more than the wall time;
* peak RSS during the ingest, and a re-ingest of the unchanged corpus
  (documents unchanged, embeddings computed: must be 0);
* nDCG@10 and R@100 of bm25 / dense / hybrid (no reranker: only chunking
  differs).

``--extras`` adds the 81 real-world fixture files (where parsing costs) and
CACM ingested from its original HTML files against its ``corpus.jsonl``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fathom.benchmarks.peak_rss import PeakRss
from fathom.benchmarks.quality import BenchIndex, Log, build_index, run_quality
from fathom.ingest.chunking import PATH_SEP
from fathom.ingest.ingest_pipeline import IngestItem
from fathom.ingest.registry import Registry
from fathom.ingest.wiring import build_ingest
from fathom.retrieval.components import load_models, open_store
from fathom.retrieval.store.contract import IndexRef
from fathom.retrieval.tenancy import Tenant
from fathom.service.core.config import Settings

STAGES = ("parse", "chunk", "embed", "points", "write", "optimize")
CORPORA = ("scifact", "cacm")
CHUNKERS = ("semantic", "late", "fixed")


def final_chunk_texts(index: BenchIndex) -> list[str]:
    """What was stored, as the encoder saw it for a plain encode: section path + chunk text."""
    ref = IndexRef(index.tenant, index.store.live_version(index.tenant) or 1)
    out = []
    for hit in index.store.scroll(ref):
        section = hit.payload.get("section_path") or []
        out.append(f"{PATH_SEP.join(section)}\n{hit.text}" if section else hit.text)
    return out


def bare_encoder(index: BenchIndex, texts: Sequence[str]) -> dict[str, Any]:
    """Passages/s of the bare encoder on ``texts`` (this process, the ingest's own session and batching)."""
    dense = index.models.dense
    dense.embed(list(texts[:16]))   # warm: the first runs allocate buffers
    t0, cpu0 = time.perf_counter(), time.process_time()
    dense.embed(list(texts))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"passages": len(texts), "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 1),
            "passages_per_s": round(len(texts) / seconds, 2)}


def ingest_row(index: BenchIndex) -> dict[str, Any]:
    s = index.ingest_summary
    secs = s["seconds"]
    bare = bare_encoder(index, final_chunk_texts(index))
    chunks_per_s = index.chunks / index.ingest_seconds
    return {
        "documents": s["ok"] + s["failed"], "chunks": index.chunks, "seconds": round(index.ingest_seconds, 1),
        "documents_per_s": round((s["ok"] + s["failed"]) / index.ingest_seconds, 2),
        "chunks_per_s": round(chunks_per_s, 2), "bare_encoder": bare,
        "encoder_ratio": round(chunks_per_s / bare["passages_per_s"], 3),
        # The same ratio in CPU seconds of this process (all threads): what one stored chunk costs against one bare
        # encode, far less sensitive than wall time to other processes on a shared machine.
        "encoder_cpu_ratio": round(bare["cpu_seconds"] / max(s.get("cpu_seconds", 0.0), 1e-9), 3),
        "stage_seconds": {stage: round(secs.get(stage, 0.0), 1) for stage in STAGES},
        "embeddings_computed": s["embeddings_computed"], "peak_rss_mb": s.get("peak_rss_mb"),
        "reingest": s.get("reingest"), "failed": s["failed"],
    }


def _quality_rows(results: dict[str, Any]) -> dict[str, Any]:
    return {mode: {"ndcg@10": results[mode]["ndcg@10"], "recall@100": results[mode]["recall@100"]}
            for mode in ("bm25", "dense", "hybrid")} | {"chunks": results["_meta"]["chunks"]}


def corpus_run(settings: Settings, dataset: Path, chunker: str, log: Log, quality: bool = True) -> dict[str, Any]:
    """One cold ingest of ``dataset`` with ``chunker``: throughput row + quality rows, from the same index."""
    index = build_index(dataset, settings, chunker=chunker, use_cache=False, reingest=True, log=log)
    try:
        row = ingest_row(index)
        log(f"  {dataset.name}/{chunker}: {row}")
        if quality:
            row["quality"] = _quality_rows(run_quality(dataset, settings, chunker=chunker, index=index, log=log))
        return row
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
    with PeakRss() as peak:
        report = pipeline.ingest(Tenant("bench-fixtures"), items, total=len(items))
    seconds = time.perf_counter() - t0
    log(f"  fixtures: {report.summary()}")
    store.close()
    registry.close()
    return {"documents": len(items), "chunks": report.chunks_written, "seconds": round(seconds, 1),
            "documents_per_s": round(len(items) / seconds, 2), "chunks_per_s": round(report.chunks_written / seconds, 2),
            "stage_seconds": {k: round(v, 1) for k, v in report.seconds.items()}, "peak_rss_mb": peak.mb,
            "failed": report.count("failed"), "failures": report.failures}


def run_ingest_bench(settings: Settings, data_dir: Path, *, log: Log = print, tmp: Path,
                     corpora: Sequence[str] = CORPORA, chunkers: Sequence[str] = CHUNKERS,
                     extras: bool = False, quality: bool = True) -> dict[str, Any]:
    settings = settings.model_copy(update={"rerank": settings.rerank.model_copy(update={"kind": "none"})})
    out: dict[str, Any] = {"load_average_start": list(os.getloadavg()), "threads": settings.models.threads,
                           "batch_tokens": settings.models.embed_batch_tokens, "runs": {}, "encoder_ratio": {}}
    for corpus in corpora:
        for chunker in chunkers:
            log(f"ingest: {corpus} / {chunker} (cold, no embedding cache)")
            out["runs"][f"{corpus}/{chunker}"] = corpus_run(settings, data_dir / corpus, chunker, log, quality)
        if "late" in chunkers:
            out["encoder_ratio"][corpus] = out["runs"][f"{corpus}/late"]["encoder_ratio"]
    if extras:
        log("throughput: 81 fixture files")
        out["fixtures"] = fixture_throughput(settings, data_dir, log, tmp)
        out["cacm_raw_vs_corpus"] = {}
        for source in ("corpus", "raw"):
            log(f"cacm from {source}")
            res = run_quality(data_dir / "cacm", settings, source=source, log=log)
            out["cacm_raw_vs_corpus"][source] = _quality_rows(res)
    out["load_average_end"] = list(os.getloadavg())
    return out


def format_ingest(results: dict[str, Any]) -> str:
    lines = ["| corpus / chunker | docs | chunks | s | docs/s | chunks/s | bare encoder passages/s | encoder_ratio | "
             "CPU ratio | "
             + " | ".join(f"{s} s" for s in STAGES) + " | peak RSS MB | re-ingest embeddings |",
             "|---" * (11 + len(STAGES)) + "|"]
    for name, r in results["runs"].items():
        st = r["stage_seconds"]
        re = r.get("reingest") or {}
        lines.append(f"| {name} | {r['documents']} | {r['chunks']} | {r['seconds']} | {r['documents_per_s']} | "
                     f"{r['chunks_per_s']} | {r['bare_encoder']['passages_per_s']} | **{r['encoder_ratio']:.3f}** | "
                     f"{r.get('encoder_cpu_ratio', '-')} | "
                     + " | ".join(str(st[s]) for s in STAGES)
                     + f" | {r['peak_rss_mb']} | {re.get('embeddings_computed', '-')} |")
    lines += ["", "| corpus / chunker | chunks | bm25 nDCG@10 | dense nDCG@10 | hybrid nDCG@10 | hybrid R@100 |",
              "|---|---|---|---|---|---|"]
    for name, r in results["runs"].items():
        if "quality" not in r:
            continue
        q = r["quality"]
        lines.append(f"| {name} | {q['chunks']} | {q['bm25']['ndcg@10']:.4f} | {q['dense']['ndcg@10']:.4f} | "
                     f"{q['hybrid']['ndcg@10']:.4f} | {q['hybrid']['recall@100']:.4f} |")
    lines.append("")
    for corpus, ratio in results["encoder_ratio"].items():
        lines.append(f"encoder_ratio {corpus} (late): {ratio:.3f}")
    lines.append(f"load average: start {results['load_average_start']}, end {results['load_average_end']}")
    if "fixtures" in results:
        f = results["fixtures"]
        lines.append(f"\nfixtures: {f['documents']} files, {f['chunks']} chunks, {f['seconds']} s, "
                     f"{f['chunks_per_s']} chunks/s, stages {f['stage_seconds']}, peak RSS {f['peak_rss_mb']} MB")
        c = results["cacm_raw_vs_corpus"]
        for source in ("corpus", "raw"):
            lines.append(f"cacm {source}: {c[source]['chunks']} chunks, hybrid nDCG@10 {c[source]['hybrid']['ndcg@10']:.4f}")
    return "\n".join(lines)
