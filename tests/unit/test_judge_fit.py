"""The shipped judge's operating point: read out of fold on its training questions, and what the guard defaults to."""

from __future__ import annotations

import numpy as np

from fathom.benchmarks.judge_fit import _folds, operating_point
from fathom.config import GuardSettings
from fathom.retrieval.calibration import Logistic
from fathom.retrieval.judge.calibration import JudgeModel
from fathom.retrieval.judge.features import ANSWER_FEATURES, CHUNK_FEATURES
from fathom.retrieval.judge.fit import Example, fit_default


def _examples(n_questions: int, signal: float, seed: int = 0) -> list[Example]:
    """Each question asked twice (answerable, then withheld); answer features noise plus ``signal`` on one of them."""
    rng = np.random.default_rng(seed)
    out = []
    for q in range(n_questions):
        for withheld in (False, True):
            label = int(not withheld)
            answer = {f: float(rng.normal()) for f in ANSWER_FEATURES}
            answer["fused_gap_doc"] += signal * label
            answer["max_cos"] = 0.9                      # on topic: the topic gate passes every example alike
            chunk_labels = [label] + [0] * 9
            chunks = [{f: float(rng.normal()) + signal * y for f in CHUNK_FEATURES} for y in chunk_labels]
            out.append(Example(f"question {q}", withheld, label, answer, chunks, chunk_labels, 0.0, [0.0] * 10))
    return out


def test_guard_defaults_are_the_shipped_models_operating_point_read_out_of_fold():
    op = JudgeModel.load().provenance["operating_point"]
    guard = GuardSettings()
    assert (guard.min_confidence, guard.min_chunk_confidence) == (op["min_confidence"], op["min_chunk_confidence"])
    assert op["read"] == "5-fold, out of fold"


def test_folds_keep_a_questions_two_asks_together_and_are_balanced():
    examples = _examples(53, 1.0)
    fold = _folds(examples, 5)
    by_question: dict[str, set[int]] = {}
    for e, f in zip(examples, fold):
        by_question.setdefault(e.query, set()).add(f)
    assert all(len(f) == 1 for f in by_question.values())
    sizes = np.bincount(fold, minlength=5)
    assert sizes.max() - sizes.min() <= 2 and _folds(examples, 5) == fold     # balanced, and the same every run


def test_out_of_fold_reading_does_not_flatter_the_model_as_in_sample_does():
    """On features that carry nothing, a model scores its own training questions better than chance (it fits their
    noise); read out of fold, it does not: the reason the shipped thresholds are read out of fold."""
    examples = _examples(120, 0.0)
    model = fit_default(examples, depth=10)
    point = operating_point(model, examples, Logistic(31.39, -13.39))
    assert point["auc_in_sample"] > 0.55
    assert abs(point["auc_out_of_fold"] - 0.5) < 0.06
    assert point["auc_out_of_fold"] < point["auc_in_sample"]
    informative = _examples(120, 2.0)
    point = operating_point(fit_default(informative, depth=10), informative, Logistic(31.39, -13.39))
    assert point["auc_out_of_fold"] > 0.8 and 0 < point["min_confidence"] < 1
