"""Validation: nDCG@10 of reranked query lists, the fused-score blend and the confidence calibration.

Everything here is fitted on the held-out slice of the *training* data (a
split of the train queries, or held-out pseudo-queries), never on a test
split. Scores are computed once per model; the blend weight and the
calibration are then cheap functions of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fathom.retrieval.calibration import Logistic
from fathom.retrieval.rerank.cross_encoder import ServingConfig
from fathom.training.rerank.data import QueryList

# (query, passages) -> one logit per passage
Scorer = Callable[[str, list[str]], np.ndarray]

# Blend weights tried, as multiples of the model's typical logit spread within a list (see ScoredLists.spread):
# at 1.0 the fused prior moves a score as far as the model's own range does (an equal-weight interpolation).
BLEND_MULTIPLES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


def ndcg_at_10(labels_in_order: Sequence[int], relevant_grades: Sequence[int]) -> float:
    """BEIR's nDCG@10 (gain = grade); the ideal counts relevant passages the list does not contain."""
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(labels_in_order[:10]) if g > 0)
    ideal = sorted(relevant_grades, reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def _ranked(ql: QueryList, scores: np.ndarray) -> list[int]:
    """Labels in descending score order; ties keep the fused order (a stable sort)."""
    order = sorted(range(len(ql.items)), key=lambda i: -scores[i])
    return [ql.items[i].label for i in order]


@dataclass(slots=True)
class ScoredLists:
    """Query lists with one model's logits per item.

    Judged lists (validation) are kept only when nDCG is defined (a positive
    exists); unjudged ones (off-topic queries, for calibration) whenever they
    have items.
    """

    lists: list[QueryList]
    logits: list[np.ndarray]

    @classmethod
    def score(cls, scorer: Scorer, lists: Sequence[QueryList], *, judged: bool = True) -> "ScoredLists":
        kept = [ql for ql in lists if ql.items and (ql.relevant_grades or not judged)]
        return cls(kept, [np.asarray(scorer(ql.query, [i.passage for i in ql.items]), dtype=np.float64) for ql in kept])

    def head(self, n: int) -> "ScoredLists":
        return ScoredLists(self.lists[:n], self.logits[:n])

    def ndcg(self, serving: ServingConfig = ServingConfig()) -> float:
        """Mean nDCG@10 after reranking every list by the served score."""
        if not self.lists:
            return 0.0
        values = [ndcg_at_10(_ranked(ql, serving.blend(lg, [i.fused_score for i in ql.items])), ql.relevant_grades)
                  for ql, lg in zip(self.lists, self.logits)]
        return float(np.mean(values))

    def spread(self) -> float:
        """Median range (max - min) of the logits within a list: the model's own scale, needing no labels."""
        ranges = [float(lg.max() - lg.min()) for lg in self.logits if lg.size > 1]
        return float(np.median(ranges)) if ranges else 0.0

    def fit_blend(self, multiples: Sequence[float] = BLEND_MULTIPLES) -> tuple[float, dict[str, float]]:
        """The fused-prior weight with the best validation nDCG@10 (the smallest on ties), and the table tried."""
        spread = self.spread()
        weights = {m: round(m * spread, 3) for m in multiples}
        table = {f"{m:g}x={w:g}": round(self.ndcg(ServingConfig(blend_weight=w)), 4) for m, w in weights.items()}
        best = max(multiples, key=lambda m: (table[f"{m:g}x={weights[m]:g}"], -m))
        return weights[best], table

    def best_scores(self, serving: ServingConfig) -> np.ndarray:
        """Each list's highest served score: what the guard judges a query by."""
        return np.array([serving.blend(lg, [i.fused_score for i in ql.items]).max()
                         for ql, lg in zip(self.lists, self.logits) if lg.size])


def first_stage_ndcg(lists: Sequence[QueryList]) -> float:
    """nDCG@10 of the lists in their fused order (what no reranker gives)."""
    kept = [ql for ql in lists if ql.relevant_grades and ql.items]
    return float(np.mean([ndcg_at_10([i.label for i in ql.items], ql.relevant_grades) for ql in kept])) if kept else 0.0


def fit_answerable(on_topic: np.ndarray, off_topic: np.ndarray, l2: float = 1e-3, iterations: int = 100) -> Logistic:
    """``P(answerable | best score) = sigmoid(a * score + b)`` with both classes weighted equally.

    The guard's calibration recipe (fathom/benchmarks/calibrate.py): on-topic queries
    have a relevant document, off-topic ones have none; a prior of 1/2 makes
    0.5 the score where both are equally likely. Newton's method on two
    parameters; the small ridge keeps ``a`` finite when the classes separate.
    """
    x = np.concatenate([on_topic, off_topic])
    y = np.concatenate([np.ones_like(on_topic), np.zeros_like(off_topic)])
    weights = np.where(y > 0, len(y) / (2 * max(len(on_topic), 1)), len(y) / (2 * max(len(off_topic), 1)))
    features = np.stack([x, np.ones_like(x)], axis=1)
    w = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(features @ w, -30, 30)))
        grad = features.T @ (weights * (p - y)) + l2 * w
        hess = (features * (weights * p * (1 - p))[:, None]).T @ features + l2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return Logistic(float(w[0]), float(w[1]))


def guard_rates(confidence: Logistic, on_topic: np.ndarray, off_topic: np.ndarray,
                threshold: float = 0.5) -> dict[str, float]:
    """How a confidence mapping would treat the queries at a guard threshold (the default ``min_confidence``)."""
    on = np.array([confidence(float(x)) for x in on_topic])
    off = np.array([confidence(float(x)) for x in off_topic])
    return {"threshold": threshold,
            "on_topic_rejected": round(float((on < threshold).mean()), 4) if on.size else None,
            "off_topic_rejected": round(float((off < threshold).mean()), 4) if off.size else None,
            "on_topic_mean_conf": round(float(on.mean()), 4) if on.size else None,
            "off_topic_mean_conf": round(float(off.mean()), 4) if off.size else None}
