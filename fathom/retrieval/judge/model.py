"""The judge's two calibrated models: standardised logistic regressions, evaluated in numpy.

Fitting happens offline or at calibration time (scikit-learn,
``fathom.retrieval.judge.fit``); serving only needs the coefficients, so a
model is a small frozen dataclass that round-trips through JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class LogisticModel:
    """``P(y=1 | x) = sigmoid(coef . (x - mean) / scale + intercept)`` over the named features."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float

    def __post_init__(self) -> None:
        n = len(self.features)
        if not (len(self.mean) == len(self.scale) == len(self.coef) == n):
            raise ValueError("a logistic model needs one mean, scale and coefficient per feature")
        if any(s <= 0 for s in self.scale):
            raise ValueError("feature scales must be positive")

    def logit(self, x: np.ndarray) -> np.ndarray:
        """Log-odds for rows of ``x`` (columns in ``features`` order); a 1-d ``x`` is one row."""
        z = (np.atleast_2d(np.asarray(x, dtype=np.float64)) - np.asarray(self.mean)) / np.asarray(self.scale)
        return z @ np.asarray(self.coef) + self.intercept

    def probability(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.clip(self.logit(x), -60.0, 60.0)))

    def to_json(self) -> dict[str, Any]:
        return {"features": list(self.features), "mean": list(self.mean), "scale": list(self.scale),
                "coef": list(self.coef), "intercept": self.intercept}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "LogisticModel":
        return cls(tuple(data["features"]), tuple(map(float, data["mean"])), tuple(map(float, data["scale"])),
                   tuple(map(float, data["coef"])), float(data["intercept"]))


def columns(rows: Sequence[Mapping[str, float]], features: Sequence[str]) -> np.ndarray:
    """Feature dictionaries as a matrix in the model's column order."""
    return np.array([[row[f] for f in features] for row in rows], dtype=np.float64).reshape(len(rows), len(features))
