"""Trained rerankers in the quality benchmark, and the depth x length x layers curve.

``fathom bench quality --rerankers NAME,...`` adds one row per reranker found
under ``<model_dir>/rerankers/`` (``--rerank-fp32`` adds each one's fp32 row
beside the int8 one), at the settings' rerank depth and length.
``fathom bench rerank-curve`` reruns the hybrid pipeline for every reranker x
depth x max length and reports nDCG@10 and the rerank stage's P50/P95 (from
production-shaped requests, see :func:`fathom.benchmarks.quality.run_mode`), next to
the machine's load average, because on a shared 2-core machine a latency
figure without its load means little.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fathom.benchmarks.quality import BenchIndex, Mode, run_mode, summarise
from fathom.retrieval.components import build_pipeline
from fathom.retrieval.rerank.interface import Reranker
from fathom.retrieval.rerank.cross_encoder import MODEL_CARD, CrossEncoderReranker
from fathom.retrieval.stages import Rerank
from fathom.service.core.config import Settings

Log = Callable[[str], None]
# The curve measures what each setting costs; a budget it could hit would replace slow rows by the fused order.
CURVE_BUDGET_MS = 60_000.0


def reranker_dir(settings: Settings, name: str) -> Path:
    path = settings.model_dir / "rerankers" / name
    if not (path / MODEL_CARD).is_file():
        raise FileNotFoundError(f"no trained reranker {name!r} in {path.parent} (run `fathom reranker train --out {name}`)")
    return path


def layers_of(reranker: Reranker) -> int | None:
    """Encoder layers of a cross-encoder (from its HF config beside the ONNX files), None for other rerankers."""
    if not isinstance(reranker, CrossEncoderReranker):
        return None
    import json

    config = reranker.encoder.model_path.parent / "hf" / "config.json"
    return int(json.loads(config.read_text())["num_hidden_layers"]) if config.is_file() else None


def load_rerankers(settings: Settings, names: Sequence[str], *, fp32: bool = False) -> list[tuple[str, Reranker]]:
    """(row name, reranker) for each trained model: its served (int8) file, and fp32 too when asked."""
    threads = settings.rerank.threads or settings.models.threads
    rows: list[tuple[str, Reranker]] = []
    for name in names:
        path = reranker_dir(settings, name)
        rows.append((f"hybrid+ce:{name}", CrossEncoderReranker.from_dir(path, threads=threads)))
        if fp32:
            rows.append((f"hybrid+ce:{name}:fp32", CrossEncoderReranker.from_dir(path, threads=threads, quantized=False)))
    return rows


@dataclass(frozen=True, slots=True)
class CurvePoint:
    name: str
    reranker: Reranker | None
    depth: int
    max_length: int
    adaptive: bool = False


def curve_points(rerankers: Sequence[tuple[str, Reranker]], depths: Sequence[int], lengths: Sequence[int],
                 adaptive: bool) -> list[CurvePoint]:
    points = [CurvePoint("hybrid", None, 0, 0)]
    for name, reranker in rerankers:
        for depth in depths:
            for length in lengths:
                points.append(CurvePoint(name, reranker, depth, length))
                if adaptive:
                    points.append(CurvePoint(name, reranker, depth, length, adaptive=True))
    return points


def run_curve(index: BenchIndex, points: Sequence[CurvePoint], *, max_queries: int | None = None,
              log: Log = print) -> list[dict[str, Any]]:
    """One row per point: nDCG@10, R@100 and rerank-stage latency on the dataset's judged queries."""
    queries = index.dataset.judged_queries
    if max_queries:
        keys = sorted(queries)
        random.Random(13).shuffle(keys)
        queries = {q: queries[q] for q in keys[:max_queries]}
    settings = index.settings.model_copy(update={"rerank": index.settings.rerank.model_copy(update={"kind": "none"})})
    pipeline = build_pipeline(settings, index.store, index.models)
    rows = []
    for point in points:
        pipeline.stage(Rerank).settings = settings.rerank.model_copy(update={
            "depth": max(point.depth, 1), "max_length": max(point.max_length, 16), "budget_ms": CURVE_BUDGET_MS,
            "adaptive": point.adaptive})
        run, stages = run_mode(pipeline, index.tenant, queries, Mode(point.name, "hybrid", point.reranker))
        summary = summarise(run, index.dataset.qrels, stages)
        rerank = summary["stages"].get("rerank", {"p50_ms": 0.0, "p95_ms": 0.0})
        row = {"reranker": point.name, "layers": layers_of(point.reranker) if point.reranker else None,
               "depth": point.depth, "max_length": point.max_length, "adaptive": point.adaptive,
               "ndcg@10": summary["ndcg@10"], "recall@100": summary["recall@100"],
               "rerank_p50_ms": rerank["p50_ms"], "rerank_p95_ms": rerank["p95_ms"], "total_p95_ms": summary["p95_ms"],
               "queries": len(queries), "load_avg_1m": round(os.getloadavg()[0], 2)}
        rows.append(row)
        log(format_curve([row], header=False))
    return rows


def format_curve(rows: Sequence[dict[str, Any]], *, header: bool = True) -> str:
    lines = ["| reranker | layers | depth | max len | adaptive | nDCG@10 | R@100 | rerank P50 ms | rerank P95 ms | "
             "total P95 ms | load 1m |", "|---|---|---|---|---|---|---|---|---|---|---|"] if header else []
    for r in rows:
        lines.append(f"| {r['reranker']} | {r['layers'] or '-'} | {r['depth'] or '-'} | {r['max_length'] or '-'} | "
                     f"{'yes' if r['adaptive'] else 'no'} | {r['ndcg@10']:.4f} | {r['recall@100']:.4f} | "
                     f"{r['rerank_p50_ms']:.1f} | {r['rerank_p95_ms']:.1f} | {r['total_p95_ms']:.1f} | "
                     f"{r['load_avg_1m']} |")
    return "\n".join(lines)
