"""Fit the guard's confidence calibration on a judged split (use ``train``, never the split you report on).

The guard's question is per query: *is there relevant context for this
question in this corpus?* Confidence is therefore calibrated as
``P(answerable | best score) = sigmoid(a * score + b)``, fitted by logistic
regression on the best candidate's score for

* on-topic queries: the split's judged queries (each has a relevant document);
* off-topic queries: ``offtopic_calibration.txt`` (none has one; a different
  list from the one the guard is evaluated on),

with the two classes weighted equally (a prior of 1/2), so ``0.5`` is the
score where the two are equally likely. It is fitted separately for each
signal the guard may see: the first-stage dense cosine (no reranker) and the
reranker's score. The same mapping scores each chunk, which is how junk chunks
below ``min_chunk_confidence`` are dropped.

``fathom bench calibrate --dataset PATH --split train [--keep-index DIR]``
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fathom.benchmarks.guard_bench import CALIBRATION_FILE, offtopic_queries
from fathom.benchmarks.quality import OPEN_POLICY, BenchIndex
from fathom.retrieval.calibration import Logistic
from fathom.retrieval.components import build_pipeline
from fathom.retrieval.query_pipeline import RetrievalQuery


def fit_logistic(x: np.ndarray, y: np.ndarray, *, balanced: bool = True, iters: int = 100, l2: float = 1e-3) -> Logistic:
    """Weighted Newton-Raphson (IRLS) on one feature plus bias; ``balanced`` weighs both classes equally."""
    w_sample = np.ones_like(x)
    if balanced:
        pos = max(y.sum(), 1.0)
        neg = max(len(y) - y.sum(), 1.0)
        w_sample = np.where(y > 0, len(y) / (2 * pos), len(y) / (2 * neg))
    X = np.stack([x, np.ones_like(x)], axis=1)
    w = np.zeros(2)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-X @ w))
        grad = X.T @ (w_sample * (p - y)) + l2 * w
        hess = (X * (w_sample * p * (1 - p))[:, None]).T @ X + l2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return Logistic(float(w[0]), float(w[1]))


def best_scores(index: BenchIndex, queries: list[str], *, rerank: bool) -> tuple[np.ndarray, np.ndarray]:
    """The best dense cosine and the best reranker score among each query's top candidates."""
    pipeline = build_pipeline(index.settings, index.store, index.models)
    dense, reranked = [], []
    for text in queries:
        res = pipeline.retrieve(RetrievalQuery(index.tenant, text, top_k=10, rerank=rerank, policy=OPEN_POLICY))
        cos = [c.dense_cos for c in res.candidates if c.dense_cos is not None]
        rr = [c.rerank_score for c in res.candidates if c.rerank_score is not None]
        dense.append(max(cos) if cos else np.nan)
        reranked.append(max(rr) if rr else np.nan)
    return np.array(dense), np.array(reranked)


def calibrate(index: BenchIndex, *, rerank: bool = True) -> dict[str, Any]:
    on_topic = list(index.dataset.judged_queries.values())
    off_topic = offtopic_queries(CALIBRATION_FILE)
    on_dense, on_rr = best_scores(index, on_topic, rerank=rerank)
    off_dense, off_rr = best_scores(index, off_topic, rerank=rerank)
    out: dict[str, Any] = {"on_topic_queries": len(on_topic), "off_topic_queries": len(off_topic)}
    for signal, on, off in (("dense", on_dense, off_dense), ("rerank", on_rr, off_rr)):
        x = np.concatenate([on, off])
        y = np.concatenate([np.ones_like(on), np.zeros_like(off)])
        ok = ~np.isnan(x)
        if ok.sum() < 10:
            continue
        model = fit_logistic(x[ok], y[ok])
        out[signal] = {
            "a": round(model.a, 4), "b": round(model.b, 4),
            "score_at_p50": round(model.at(0.5), 4), "score_at_p20": round(model.at(0.2), 4),
            "on_topic_best_p05": round(float(np.nanpercentile(on, 5)), 4),
            "off_topic_best_max": round(float(np.nanmax(off)), 4),
        }
    return out
