"""Stage ``guard``: confidence of the top ``top_k`` and the empty-context decision (``fathom.retrieval.guard``)."""

from __future__ import annotations

from fathom.retrieval import guard
from fathom.retrieval.calibration import Logistic
from fathom.retrieval.query_pipeline import RetrievalState, Stage


class Guard(Stage):
    """Writes ``decision``; runs after a halt too (an empty index is still an answer). A decision an earlier
    stage made (``RetrievalState.finish``) is kept."""

    name = timing = "guard"
    finishing = True
    reads = frozenset({"query", "candidates"})
    writes = frozenset({"decision"})

    def __init__(self, dense_calibration: Logistic):
        self.dense_calibration = dense_calibration

    def run(self, state: RetrievalState) -> None:
        if state.decision is not None:
            return
        top = state.candidates[: state.query.top_k]
        if state.judge is None:   # no judge (bm25/dense modes, or it is off), or it failed (a degrading reason)
            guard.score(top, state.query.text, self.dense_calibration, state.rerank_calibration)
        state.decision = guard.decide(top, state.query.policy, state.reasons,
                                      state.judge.confidence if state.judge is not None else None)
