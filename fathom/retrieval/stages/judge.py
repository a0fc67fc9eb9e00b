"""Stage ``judge``: the relevance judge between rerank and guard (``fathom.retrieval.judge``)."""

from __future__ import annotations

import logging

from fathom.retrieval.guard import Reason
from fathom.retrieval.judge.features import HeadChunk
from fathom.retrieval.judge.judge import JudgeError, JudgeInput, JudgeTimeout, RelevanceJudge
from fathom.retrieval.query_pipeline import OnDeadline, RetrievalQuery, RetrievalState, Stage
from fathom.retrieval.rerank.cross_encoder import passage_text
from fathom.retrieval.store.contract import DENSE


class Judge(Stage):
    """Per-chunk evidence probabilities (written as each head candidate's ``confidence``) and the answer-level
    confidence the guard thresholds (``state.judge``), on hybrid queries with a query embedding.

    A judge that raises or overruns its budget (or starts past the request deadline) leaves ``state.judge``
    unset and adds ``judge_failed`` / ``judge_timeout`` (degrading): the guard then reads the dense-cosine
    logistic, and the answer is never an ``ok``. With ``order`` the head is served in the judge's order.

    The judge reads the served head in *fused* order: its features (fused-score gaps between the best
    documents, the top chunk's coverage) were fitted on the first stage's order, which a reranker changes.
    """

    name = timing = "judge"
    on_deadline = OnDeadline.RUN     # it checks the deadline itself, so a late request is flagged judge_timeout
    reads = frozenset({"query", "candidates", "mode", "dense"})
    writes = frozenset({"candidates", "judge"})
    parts = ("judge",)

    def __init__(self, judge: RelevanceJudge, *, order: bool = False):
        self.judge = judge
        self.order = order

    def applies(self, state: RetrievalState) -> bool:
        # Its features are those of full DBSF-fused hybrid heads with dense cosines. A shorter head (a tenant with
        # fewer than `depth` chunks, or a filter that matches fewer) is outside what it was fitted on: the guard
        # judges it by the dense-cosine logistic, as before (not a degradation: nothing failed).
        return state.mode == "hybrid" and state.dense is not None and len(state.candidates) >= self.judge.depth

    def head_size(self, query: RetrievalQuery) -> int:
        return self.judge.depth if query.mode == "hybrid" else 0

    def run(self, state: RetrievalState) -> None:
        q = state.query
        head = state.candidates[: max(q.top_k, self.judge.depth)]
        view = sorted(head, key=lambda c: c.fused_rank)
        try:
            missing = sum(c.dense_cos is None for c in view)
            if missing:
                raise JudgeError(f"{missing} head chunk(s) have no stored dense vector")
            chunks = [HeadChunk(c.hit.document_id, passage_text(c), c.fused_score, float(c.dense_cos),  # type: ignore[arg-type]
                                c.hit.vectors.get(DENSE)) for c in view]
            out = self.judge.run(JudgeInput(q.tenant, q.text, chunks, q.deadline))
        except JudgeTimeout as exc:
            log.warning("relevance judge overran: %s", exc)
            state.reasons.append(Reason.JUDGE_TIMEOUT)
            return
        except JudgeError as exc:
            log.warning("relevance judge failed: %s", exc)
            state.reasons.append(Reason.JUDGE_FAILED)
            return
        for c, p in zip(view, out.chunk_probability):
            c.confidence = p
        if self.order:
            head.sort(key=lambda c: -c.confidence)
            state.candidates[: len(head)] = head
        state.judge = out


log = logging.getLogger(__name__)
