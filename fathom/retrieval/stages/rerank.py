"""Stage ``rerank``: the second stage reorders the head within its time budget, or the fused order stays."""

from __future__ import annotations

import logging

from fathom.config import RerankSettings
from fathom.retrieval.guard import Reason
from fathom.retrieval.query_pipeline import OnDeadline, RetrievalQuery, RetrievalState, Stage
from fathom.retrieval.rerank.adaptive import AdaptivePolicy, decide_depth
from fathom.retrieval.rerank.interface import Deadline, Reranker, RerankTimeout

log = logging.getLogger(__name__)


class Rerank(Stage):
    """Runs when a reranker is configured, the query asks for it and there are candidates.

    Past the request deadline it is skipped (``deadline_exceeded``, degrading); a reranker that fails or
    overruns ``settings.budget_ms`` leaves the fused order (``reranker_failed`` / ``reranker_timeout``,
    degrading). With ``settings.adaptive`` a decisive fusion shortens or skips it (not a degradation).
    ``settings`` carries the served sizes (``RerankSettings.sizes``: resolved against the reranker's card
    when the pipeline is built).
    """

    name = timing = "rerank"
    on_deadline = OnDeadline.SKIP
    reads = frozenset({"query", "candidates"})
    writes = frozenset({"candidates", "reranker", "rerank_calibration"})
    parts = ("reranker",)

    def __init__(self, reranker: Reranker | None, settings: RerankSettings):
        self.reranker = reranker
        self.settings = settings

    def _wanted(self, query: RetrievalQuery) -> bool:
        return self.reranker is not None and query.rerank

    def head_size(self, query: RetrievalQuery) -> int:
        return self.settings.sizes()[0] if self._wanted(query) else 0

    def vectors(self, query: RetrievalQuery) -> tuple[str, ...]:
        return tuple(self.reranker.needs_vectors) if self.reranker is not None and query.rerank else ()

    def applies(self, state: RetrievalState) -> bool:
        return self._wanted(state.query) and bool(state.candidates)

    def run(self, state: RetrievalState) -> None:
        reranker, cfg, q, cands = self.reranker, self.settings, state.query, state.candidates
        assert reranker is not None
        depth, max_length = cfg.sizes()
        if cfg.adaptive:
            decision = decide_depth(cands[:depth], depth, AdaptivePolicy(cfg.adaptive_margin, cfg.confident_depth))
            if decision.confident:
                state.reasons.append(Reason.RERANK_SKIPPED_CONFIDENT if decision.depth == 0
                                     else Reason.RERANK_SHORTENED_CONFIDENT)
                if decision.depth == 0:
                    state.reranker = reranker.name
                    return
                depth = decision.depth
        head, tail = cands[:depth], cands[depth:]
        deadline = Deadline.after_ms(min(cfg.budget_ms, q.deadline.remaining_ms()) if q.deadline else cfg.budget_ms)
        try:
            scores = reranker.score(q.text, head, max_length=max_length, deadline=deadline)
            deadline.check("reranker")
        except RerankTimeout:
            state.reasons.append(Reason.RERANKER_TIMEOUT)
            return
        except Exception as exc:
            log.warning("reranker failed, keeping fused order: %s", exc)
            state.reasons.append(Reason.RERANKER_FAILED)
            return
        for c, s in zip(head, scores):
            c.rerank_score = s
        head.sort(key=lambda c: c.rerank_score, reverse=True)  # type: ignore[arg-type, return-value]
        state.candidates = head + tail
        state.reranker = reranker.name
        state.rerank_calibration = reranker.confidence
