"""The guard benchmark's statistics against values worked out by hand, and its query split."""

from __future__ import annotations

import pytest

from fathom.benchmarks.answer_stats import (
    expected_calibration_error,
    rejected_at_loss,
    reliability,
    roc_auc,
    tradeoff,
)
from fathom.benchmarks.guard_protocol import split_queries


def test_roc_auc_counts_ordered_pairs() -> None:
    # positives 0.9, 0.8, 0.4 vs negatives 0.5, 0.3: 5 of the 6 pairs are ordered right
    assert roc_auc([0.9, 0.8, 0.4], [0.5, 0.3]) == pytest.approx(5 / 6)
    assert roc_auc([0.5], [0.5]) == pytest.approx(0.5)          # a tie counts half
    assert roc_auc([], [0.1]) is None


def test_reliability_and_ece_by_hand() -> None:
    conf = [0.15, 0.15, 0.85, 0.85]
    label = [0, 1, 1, 1]
    rows = reliability(conf, label)
    assert [(r["bin"], r["n"], r["mean_confidence"], r["observed"]) for r in rows] == [
        ([0.1, 0.2], 2, 0.15, 0.5), ([0.8, 0.9], 2, 0.85, 1.0)]
    # 1/2 * |0.5 - 0.15| + 1/2 * |1.0 - 0.85|
    assert expected_calibration_error(conf, label) == pytest.approx(0.25)
    # one class only: still defined (all unanswerable, confidence 0.2 -> off by 0.2)
    assert expected_calibration_error([0.2, 0.2], [0, 0]) == pytest.approx(0.2)
    # a confidence of exactly 1.0 falls in the last bin, as in sklearn
    assert reliability([1.0, 0.95], [1, 1])[0]["bin"] == [0.9, 1.0]


def test_tradeoff_and_rejection_at_answerable_loss() -> None:
    answerable = [i / 20 for i in range(1, 21)]          # 0.05 ... 1.00
    unanswerable = [0.02, 0.08, 0.5, 0.9]
    at5 = rejected_at_loss(answerable, unanswerable, 0.05)
    assert at5["answerable_lost"] == pytest.approx(0.05)   # only 0.05 falls under the threshold 0.10
    assert at5["threshold"] == pytest.approx(0.10)
    assert at5["unanswerable_rejected"] == pytest.approx(0.5)
    curve = {row["threshold"]: row for row in tradeoff(answerable, unanswerable)}
    assert curve[0.0]["answerable_lost"] == 0.0 and curve[0.0]["unanswerable_rejected"] == 0.0
    assert curve[1.0]["answerable_lost"] == pytest.approx(0.95) and curve[1.0]["unanswerable_rejected"] == 1.0


def test_split_removes_evidence_of_half_the_evaluation_queries() -> None:
    qrels = {f"q{i}": {f"d{i}": 1, "shared": 1} if i % 5 == 0 else {f"d{i}": 1} for i in range(40)}
    split = split_queries(qrels, seed=3)
    assert len(split.golden) == 20 and not set(split.golden) & (set(split.answerable) | set(split.unanswerable))
    assert len(split.removed_for) == 10
    assert split.removed_docs == {d for q in split.removed_for for d in qrels[q]}
    # every answerable query keeps a judged document; every unanswerable one has none left
    assert all(set(qrels[q]) - split.removed_docs for q in split.answerable)
    assert all(not set(qrels[q]) - split.removed_docs for q in split.unanswerable)
    assert set(split.answerable) | set(split.unanswerable) == set(qrels) - set(split.golden)
    assert split_queries(qrels, seed=3) == split and split_queries(qrels, seed=4) != split
