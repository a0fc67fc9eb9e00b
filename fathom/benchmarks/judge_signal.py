"""``fathom bench judge-signal``: would a trained cross-encoder tell the judge whether the head answers the query?

The relevance judge's known limit (issue 14, README "The guard") is that
first-stage features cannot see whether a chunk *states* the answer. The
standard remedy is a pair scorer trained on on-topic negatives. This
benchmark measures what one of our own trained cross-encoders
(``fathom reranker train``, the model named by ``--reranker``) adds, before
anyone wires one into the serving judge.

Protocol (the judge's own, ``fathom/retrieval/judge/fit.py``): every judged
query of the split is asked through the real pipeline twice, as it is
(answerable) and with its judged documents excluded from the search
(``MetadataFilter.exclude_documents``: on topic, unanswerable). Per head:

* the shipped judge's ``confidence`` (what the guard reads today);
* the cross-encoder's logits for the first ``depth`` chunks (int8, the
  model's served file, max length 128), and their max / top-1 gap / top-3
  mean;
* a logistic blend of the judge's answer features with those, scored by
  5-fold cross-validation on the split (the cross-encoders are trained on
  SciFact *train*, so no blend is ever fitted on heads the scorer saw), next
  to the same blend without the cross-encoder (``judge_features_cv``).

Reported per variant: ROC AUC answerable vs withheld and the share of
withheld questions rejected at the threshold that loses 5 % of the
answerable ones (the issue's operating point); and the cross-encoder's
in-process P50 / P95 per head at each depth (the judge's budget is 20 ms).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fathom.benchmarks.answer_stats import roc_auc
from fathom.benchmarks.quality import build_index
from fathom.config import Settings
from fathom.retrieval.components import build_pipeline
from fathom.retrieval.judge.fit import OPEN
from fathom.retrieval.models.onnx_cross_encoder import OnnxCrossEncoder
from fathom.retrieval.query_pipeline import RetrievalQuery
from fathom.retrieval.rerank.cross_encoder import passage_text
from fathom.retrieval.store.contract import MetadataFilter

ANSWERABLE_LOSS = 0.05
MAX_LENGTH = 128
CV_FOLDS = 5
Log = Callable[[str], None]


def operating_point(answerable: np.ndarray, withheld: np.ndarray) -> dict[str, float | None]:
    """AUC, and the share of withheld heads under the threshold that keeps 95 % of the answerable ones."""
    threshold = np.sort(answerable)[int(np.floor(ANSWERABLE_LOSS * len(answerable)))]
    auc = roc_auc(answerable, withheld)
    return {"auc": None if auc is None else round(auc, 4),
            "unanswerable_rejected": round(float(np.mean(withheld < threshold)), 4)}


def _heads(path: Path, settings: Settings, split: str, keep: Path | None, scorer: OnnxCrossEncoder,
           depths: Sequence[int], log: Log) -> tuple[list[dict[str, Any]], dict[int, list[float]]]:
    index = build_index(path, settings, split=split, state_dir=keep, log=log)
    try:
        pipeline = build_pipeline(index.settings, index.store, index.models)
        rows: list[dict[str, Any]] = []
        ms: dict[int, list[float]] = {d: [] for d in depths}
        for qid, relevant in sorted(index.dataset.qrels.items()):
            query = index.dataset.queries.get(qid)
            if query is None:
                continue
            for withheld in (False, True):
                flt = MetadataFilter({}, exclude_documents=tuple(sorted(relevant))) if withheld else None
                res = pipeline.retrieve(RetrievalQuery(index.tenant, query, top_k=10, filter=flt, policy=OPEN))
                if res.judge is None:
                    continue
                texts = [passage_text(c) for c in res.candidates[:max(depths)]]
                row: dict[str, Any] = {"answerable": not withheld, "confidence": res.judge.confidence,
                                       "features": [res.judge.base_answer_logit,
                                                    *res.judge.answer_features.values()]}
                for d in depths:
                    t0 = time.perf_counter()
                    logits = np.sort(np.asarray(scorer.score(query, texts[:d], max_length=MAX_LENGTH)))[::-1]
                    ms[d].append((time.perf_counter() - t0) * 1000.0)
                    row[d] = [float(logits[0]), float(logits[0] - logits[1]) if len(logits) > 1 else 0.0,
                              float(logits[:3].mean())]
                rows.append(row)
        return rows, ms
    finally:
        index.close()


def _cross_validated(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    return cross_val_predict(model, x, y, cv=CV_FOLDS, method="predict_proba")[:, 1]


def run_judge_signal(datasets: Sequence[Path], settings: Settings, model_dir: Path, *, depths: Sequence[int],
                     split: str = "test", keep_index: Path | None = None, log: Log = print) -> dict[str, Any]:
    scorer = OnnxCrossEncoder(model_dir, threads=settings.rerank.threads or settings.models.threads, quantized=True)
    out: dict[str, Any] = {"reranker": str(model_dir), "split": split, "max_length": MAX_LENGTH, "datasets": {}}
    for path in datasets:
        rows, ms = _heads(path, settings, split, keep_index / path.name if keep_index else None, scorer, depths, log)
        y = np.array([int(r["answerable"]) for r in rows])

        def point(scores: Sequence[float]) -> dict[str, float | None]:
            s = np.asarray(scores, dtype=float)
            return operating_point(s[y == 1], s[y == 0])

        judge_x = np.array([r["features"] for r in rows])
        result: dict[str, Any] = {"answerable": int(y.sum()), "withheld": int((1 - y).sum()),
                                  "judge_confidence": point([r["confidence"] for r in rows]),
                                  "judge_features_cv": point(_cross_validated(judge_x, y))}
        for d in depths:
            ce = np.array([r[d] for r in rows])
            result[f"depth_{d}"] = {
                "ce_max": point(ce[:, 0]),
                "judge_plus_ce_cv": point(_cross_validated(np.hstack([judge_x, ce]), y)),
                "ce_ms_p50": round(float(np.percentile(ms[d], 50)), 2),
                "ce_ms_p95": round(float(np.percentile(ms[d], 95)), 2)}
        out["datasets"][path.name] = result
        log(f"  {path.name}: {result}")
    return out


def format_signal(results: dict[str, Any]) -> str:
    lines = ["| dataset | variant | AUC | unanswerable rejected at 5 % answerable loss | CE ms P50 / P95 |",
             "|---|---|---|---|---|"]
    for name, r in results["datasets"].items():
        for label, key in (("judge (shipped)", "judge_confidence"), ("judge features, 5-fold", "judge_features_cv")):
            lines.append(f"| {name} | {label} | {r[key]['auc']} | {r[key]['unanswerable_rejected']} | - |")
        for key, v in r.items():
            if key.startswith("depth_"):
                d = key.split("_")[1]
                lat = f"{v['ce_ms_p50']} / {v['ce_ms_p95']}"
                lines.append(f"| {name} | CE max @{d} | {v['ce_max']['auc']} | {v['ce_max']['unanswerable_rejected']} | "
                             f"{lat} |")
                lines.append(f"| {name} | judge + CE @{d}, 5-fold | {v['judge_plus_ce_cv']['auc']} | "
                             f"{v['judge_plus_ce_cv']['unanswerable_rejected']} | {lat} |")
    return "\n".join(lines)
