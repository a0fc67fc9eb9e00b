"""Statistics of an answer-level confidence: ROC AUC, reliability table, expected calibration error, trade-off.

scikit-learn computes the ROC AUC and the per-bin means (``calibration_curve``);
this module only adds the bin counts the expected calibration error needs and the
rejection trade-off of a threshold on the confidence.

* **ECE** (expected calibration error): 10 equal-width bins of the confidence;
  ``sum_b n_b / N * |observed rate_b - mean confidence_b|`` (empty bins count
  zero). A confidence that says 0.8 should be right 80 % of the time.
* **Trade-off**: for a threshold ``t`` a query is rejected when its confidence is
  under ``t``; the curve pairs the share of unanswerable queries rejected with the
  share of answerable ones lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score

N_BINS = 10


def roc_auc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """P(a positive scores above a negative), ties counted half; None when a class is empty."""
    if not len(positive) or not len(negative):
        return None
    y = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    return float(roc_auc_score(y, np.r_[np.asarray(positive, float), np.asarray(negative, float)]))


def _bins(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """The bin of each confidence, as sklearn's ``calibration_curve(strategy="uniform")`` assigns it."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], confidence, side="right")


def reliability(confidence: Sequence[float], label: Sequence[int], n_bins: int = N_BINS) -> list[dict[str, Any]]:
    """Per non-empty bin: its range, count, mean confidence and observed rate of the label."""
    conf = np.clip(np.asarray(confidence, dtype=float), 0.0, 1.0)
    y = np.asarray(label, dtype=int)
    if not conf.size:
        return []
    bins = _bins(conf, n_bins)
    counts = np.bincount(bins, minlength=n_bins)
    if y.min() == y.max():   # calibration_curve needs both classes; the per-bin means are still defined
        observed = [float(y[bins == b].mean()) for b in range(n_bins) if counts[b]]
        predicted = [float(conf[bins == b].mean()) for b in range(n_bins) if counts[b]]
    else:
        observed, predicted = (list(map(float, a)) for a in calibration_curve(y, conf, n_bins=n_bins, strategy="uniform"))
    rows = []
    for b, obs, pred in zip([b for b in range(n_bins) if counts[b]], observed, predicted):
        rows.append({"bin": [round(b / n_bins, 2), round((b + 1) / n_bins, 2)], "n": int(counts[b]),
                     "mean_confidence": round(pred, 4), "observed": round(obs, 4)})
    return rows


def expected_calibration_error(confidence: Sequence[float], label: Sequence[int], n_bins: int = N_BINS) -> float | None:
    rows = reliability(confidence, label, n_bins)
    total = sum(r["n"] for r in rows)
    if not total:
        return None
    return float(sum(r["n"] / total * abs(r["observed"] - r["mean_confidence"]) for r in rows))


def rejected_share(confidence: Sequence[float], threshold: float) -> float:
    conf = np.asarray(confidence, dtype=float)
    return float((conf < threshold).mean()) if conf.size else 0.0


def tradeoff(answerable: Sequence[float], unanswerable: Sequence[float],
             thresholds: Sequence[float] | None = None) -> list[dict[str, float]]:
    """Unanswerable rejected vs answerable lost, per confidence threshold (0.00-1.00 by 0.05 by default)."""
    ts = np.round(np.linspace(0, 1, 21), 2) if thresholds is None else thresholds
    return [{"threshold": float(t), "answerable_lost": round(rejected_share(answerable, t), 4),
             "unanswerable_rejected": round(rejected_share(unanswerable, t), 4)} for t in ts]


def rejected_at_loss(answerable: Sequence[float], unanswerable: Sequence[float], max_loss: float = 0.05) -> dict[str, float]:
    """The highest threshold that loses at most ``max_loss`` of the answerable, and what it rejects.

    Read from the data it is reported on (an oracle threshold): it measures how well the confidence *separates*
    the groups, not what the default threshold does (the status mix says that).
    """
    a = np.sort(np.asarray(answerable, dtype=float))
    u = np.asarray(unanswerable, dtype=float)
    if not a.size or not u.size:
        return {"threshold": 0.0, "answerable_lost": 0.0, "unanswerable_rejected": 0.0}
    allowed = int(np.floor(max_loss * a.size + 1e-9))   # answerable queries that may fall under the threshold
    t = float(a[allowed]) if allowed < a.size else float(np.nextafter(a[-1], np.inf))
    return {"threshold": round(t, 6), "answerable_lost": round(rejected_share(a, t), 4),
            "unanswerable_rejected": round(rejected_share(u, t), 4)}
