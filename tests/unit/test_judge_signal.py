"""The judge-signal benchmark's operating point: the issue's "unanswerable rejected at 5 % answerable loss"."""

import numpy as np

from fathom.benchmarks.judge_signal import operating_point


def test_operating_point_rejects_what_falls_under_the_answerable_5th_percentile():
    answerable = np.arange(100, dtype=float)          # threshold: the 5th smallest, 5.0 (5 % of them under it)
    withheld = np.array([0.0, 1.0, 4.9, 5.0, 50.0, 99.0, 200.0, 3.0])
    point = operating_point(answerable, withheld)
    assert point["unanswerable_rejected"] == 4 / 8           # 0, 1, 3 and 4.9 are under 5.0
    assert 0.0 < point["auc"] < 1.0
    assert operating_point(answerable + 1000, withheld)["auc"] == 1.0
    assert operating_point(answerable, answerable)["auc"] == 0.5
