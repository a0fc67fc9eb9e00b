"""IR metrics against values computed by hand."""

import math

import pytest

from fathom.retrieval.ir_metrics import evaluate, mrr_at_k, ndcg_at_k, percentile, recall_at_k


def test_ndcg_hand_computed():
    # Relevant: a (grade 1), c (grade 1). Ranked: a, b, c.
    # DCG = 1/log2(2) + 0 + 1/log2(4) = 1 + 0.5 = 1.5 ; IDCG = 1 + 1/log2(3) = 1.63093
    got = ndcg_at_k(["a", "b", "c"], {"a": 1, "c": 1}, 10)
    assert got == pytest.approx(1.5 / (1 + 1 / math.log2(3)), abs=1e-9)
    assert got == pytest.approx(0.91972, abs=1e-5)


def test_ndcg_graded_and_cutoff():
    # Grades 2 and 1; the grade-2 doc sits at rank 3, beyond a cutoff of 2.
    assert ndcg_at_k(["x", "b", "a"], {"a": 2, "b": 1}, 2) == pytest.approx((1 / math.log2(3)) / (2 + 1 / math.log2(3)))
    assert ndcg_at_k(["a", "b"], {"a": 2, "b": 1}, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x"], {"a": 1}, 10) == 0.0


def test_recall_and_mrr():
    assert recall_at_k(["a", "x", "y", "b"], {"a": 1, "b": 1, "c": 1}, 2) == pytest.approx(1 / 3)
    assert recall_at_k(["a", "x", "y", "b"], {"a": 1, "b": 1, "c": 1}, 10) == pytest.approx(2 / 3)
    assert mrr_at_k(["x", "y", "b"], {"b": 1}, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["x", "y", "b"], {"b": 1}, 2) == 0.0


def test_evaluate_averages_over_judged_queries():
    run = {"q1": ["a", "b"], "q2": ["z"], "q3": ["a"]}
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}   # q3 unjudged: ignored
    m = evaluate(run, qrels)
    assert m["mrr@10"] == pytest.approx(0.5)
    assert m["recall@100"] == pytest.approx(0.5)
    assert m["ndcg@10"] == pytest.approx(0.5)


def test_percentile_matches_linear_interpolation():
    assert percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert percentile([10, 20, 30, 40, 50], 95) == pytest.approx(48.0)
    assert percentile([], 95) == 0.0
