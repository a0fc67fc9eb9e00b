"""The empty-context guard as a unit (fathom/retrieval/guard.py): which signal a confidence comes from,
and how thresholds, stage reasons and an empty list become a status."""

from __future__ import annotations

import pytest

from fathom.config import GuardSettings
from fathom.retrieval.calibration import Logistic, ramp
from fathom.retrieval.guard import DEGRADING, GuardPolicy, Reason, Status, confidence, decide, score
from fathom.retrieval.rerank.interface import Candidate
from fathom.retrieval.store.contract import Hit

DENSE = Logistic(*GuardSettings().dense_calibration)


def cand(text: str = "waggle dance of honeybees", *, cos: float | None = None, rerank: float | None = None) -> Candidate:
    c = Candidate(Hit("id", 1.0, {"document_id": "d", "text": text}), 1.0, 0, dense_cos=cos)
    c.rerank_score = rerank
    return c


def test_a_calibrated_reranker_score_wins_then_the_dense_cosine_then_term_coverage() -> None:
    calibrated = lambda s: 0.9   # noqa: E731
    uncalibrated = lambda s: None   # noqa: E731
    assert confidence(cand(cos=0.5, rerank=3.0), set(), DENSE, calibrated) == 0.9
    assert confidence(cand(cos=0.5, rerank=3.0), set(), DENSE, uncalibrated) == pytest.approx(DENSE(0.5))
    assert confidence(cand(cos=0.5, rerank=3.0), set(), DENSE, None) == pytest.approx(DENSE(0.5))
    lexical = cand()
    assert confidence(lexical, {"waggl", "danc", "flower"}, DENSE, None) == pytest.approx(ramp(2 / 3, 0.2, 1.0))
    assert lexical.term_coverage == pytest.approx(2 / 3)


def test_score_tokenizes_the_query_only_when_a_candidate_lacks_a_cosine() -> None:
    dense_only = [cand(cos=0.6), cand(cos=0.4)]
    score(dense_only, "anything at all", DENSE, None)
    assert [c.term_coverage for c in dense_only] == [None, None]
    mixed = [cand(cos=0.6), cand("the waggle dance")]
    score(mixed, "waggle dance", DENSE, None)
    assert mixed[1].term_coverage == 1.0 and mixed[1].confidence == 1.0


def test_decide_keeps_relevant_chunks_and_says_why_it_keeps_none() -> None:
    policy = GuardPolicy(min_confidence=0.5, min_chunk_confidence=0.2)
    good, junk = cand(), cand()
    good.confidence, junk.confidence = 0.8, 0.1
    d = decide([good, junk], policy, [])
    assert d.status is Status.OK and d.kept == [good] and d.confidence == 0.8 and d.reasons == []
    low = cand()
    low.confidence = 0.4
    assert decide([low], policy, []).reasons == [Reason.LOW_CONFIDENCE]
    assert decide([junk], policy, []).reasons == [Reason.BELOW_RELEVANCE_THRESHOLD]
    assert decide([], policy, []).reasons == [Reason.NO_CANDIDATES]
    assert decide([], policy, [Reason.EMPTY_INDEX]).reasons == [Reason.EMPTY_INDEX]   # not also no_candidates


@pytest.mark.parametrize("reason", sorted(DEGRADING))
def test_a_degrading_stage_reason_makes_a_relevant_answer_degraded(reason: Reason) -> None:
    c = cand()
    c.confidence = 0.9
    d = decide([c], GuardPolicy(), [reason])
    assert d.status is Status.DEGRADED and d.reasons == [reason] and d.kept == [c]


def test_adaptive_rerank_reasons_do_not_degrade() -> None:
    c = cand()
    c.confidence = 0.9
    for reason in (Reason.RERANK_SKIPPED_CONFIDENT, Reason.RERANK_SHORTENED_CONFIDENT):
        assert decide([c], GuardPolicy(), [reason]).status is Status.OK
