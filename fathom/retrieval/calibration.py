"""Score → confidence: ``P(answerable | score) = sigmoid(a * score + b)``.

Each relevance signal (first-stage dense cosine, a reranker's score) has its
own scale; the guard compares confidences, not raw scores, so thresholds mean
the same thing whichever reranker ran. The coefficients are fitted by
``fathom bench calibrate`` (fathom/benchmarks/calibrate.py) on a judged *train*
split plus off-topic queries, and live in settings (or a model card).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Logistic:
    a: float
    b: float

    def __call__(self, score: float) -> float:
        z = self.a * score + self.b
        return 1.0 / (1.0 + math.exp(-z)) if z > -500 else 0.0

    def at(self, p: float) -> float:
        """The score at which the confidence equals ``p``."""
        return (math.log(p / (1 - p)) - self.b) / self.a


def ramp(x: float, lo: float, hi: float) -> float:
    """Piecewise-linear map onto [0, 1]: for signals with no fitted calibration (BM25 term coverage)."""
    return float(min(1.0, max(0.0, (x - lo) / (hi - lo))))
