"""The relevance judge: calibrated per-chunk evidence probabilities and the answer-level confidence.

``judge.py`` (the component), ``features.py`` (what it looks at), ``model.py``
(logistic models in numpy), ``calibration.py`` (the shipped default and the
per-tenant calibrations), ``fit.py`` (fitting both from questions with known
evidence, asked with and without it).
"""

from fathom.retrieval.judge.judge import JudgeError, JudgeInput, JudgeOutput, JudgeTimeout, RelevanceJudge

__all__ = ["JudgeError", "JudgeInput", "JudgeOutput", "JudgeTimeout", "RelevanceJudge"]
