"""Empty-context guard: decide whether the context is worth handing to an LLM.

All of the guard is here: the statuses and reason codes, the per-tenant policy,
how a candidate's confidence is read from the signals it carries
(:func:`score`) and the decision (:func:`decide`). The pipeline's ``guard``
stage (``fathom/retrieval/stages/guard.py``) only calls these two.

The guard never lets an empty list go out as ``ok``. It turns the stage
outcomes and relevance signals into one of four statuses:

* ``ok`` - relevant chunks found, every stage ran as configured;
* ``degraded`` - relevant chunks found, but a stage fell back (embedder down:
  BM25 only; reranker failed or overran: fused order). ``reasons`` says which;
* ``no_relevant_context`` - nothing (or nothing relevant enough) was found.
  The chunks list is empty on purpose: junk context makes LLMs hallucinate;
* ``unavailable`` - a dependency the answer needs (the store) is down; the API
  answers 503. Produced by the pipeline, listed here for completeness.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from fathom.retrieval.bm25 import tokenize
from fathom.retrieval.calibration import Logistic, ramp
from fathom.retrieval.rerank.interface import Candidate


class Status(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    NO_RELEVANT_CONTEXT = "no_relevant_context"
    UNAVAILABLE = "unavailable"


class Reason(StrEnum):
    """Machine-readable reason codes (public API: add, never rename)."""

    EMPTY_INDEX = "empty_index"                    # the tenant has nothing indexed
    NO_CANDIDATES = "no_candidates"                # the search matched nothing
    BELOW_RELEVANCE_THRESHOLD = "below_relevance_threshold"   # every candidate scored under the chunk threshold
    LOW_CONFIDENCE = "low_confidence"              # the best candidate is under the response threshold
    EMBEDDER_FAILED = "embedder_failed"            # dense leg skipped; BM25 only
    RERANKER_FAILED = "reranker_failed"            # fused order returned
    RERANKER_TIMEOUT = "reranker_timeout"          # fused order returned
    RERANK_SKIPPED_CONFIDENT = "rerank_skipped_confident"   # adaptive: fusion was already decisive (not a degradation)
    RERANK_SHORTENED_CONFIDENT = "rerank_shortened_confident"   # adaptive: a shorter head was reranked (not a degradation)
    STORE_UNAVAILABLE = "store_unavailable"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    JUDGE_FAILED = "judge_failed"                  # the relevance judge raised: confidence from the dense cosine
    JUDGE_TIMEOUT = "judge_timeout"                # the relevance judge overran its budget: the same fallback


# deadline_exceeded: the request deadline passed before reranking, so the fused order went out.
# judge_failed / judge_timeout: the answer is judged by the first-stage dense cosine, which cannot tell an on-topic
# question the corpus does not answer from one it does: never an `ok`.
DEGRADING = frozenset({Reason.EMBEDDER_FAILED, Reason.RERANKER_FAILED, Reason.RERANKER_TIMEOUT,
                       Reason.DEADLINE_EXCEEDED, Reason.JUDGE_FAILED, Reason.JUDGE_TIMEOUT})


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    """Per-tenant thresholds (defaults come from settings; tenants may override)."""

    min_confidence: float = 0.30
    min_chunk_confidence: float = 0.20


@dataclass(slots=True)
class GuardDecision:
    status: Status
    reasons: list[Reason]
    confidence: float
    kept: list[Candidate]


def confidence(c: Candidate, q_terms: set[str], dense_calibration: Logistic,
               rerank_calibration: Callable[[float], float | None] | None) -> float:
    """A candidate's calibrated probability of being relevant, from the best signal it carries.

    A reranker's score when the reranker that scored it has a fitted calibration; else the first-stage dense
    cosine (calibrated in settings); else, BM25 only (by request or because the embedder failed), the share
    of query terms it contains: lexical overlap is all there is.
    """
    if c.rerank_score is not None and rerank_calibration is not None:
        calibrated = rerank_calibration(c.rerank_score)
        if calibrated is not None:
            return calibrated
    if c.dense_cos is not None:
        return dense_calibration(c.dense_cos)
    if q_terms:
        c.term_coverage = len(q_terms & set(tokenize(c.hit.text))) / len(q_terms)
    return ramp(c.term_coverage or 0.0, 0.2, 1.0)


def score(candidates: Sequence[Candidate], query: str, dense_calibration: Logistic,
          rerank_calibration: Callable[[float], float | None] | None) -> None:
    """Fill in ``confidence`` of each candidate (the query is tokenized only if a candidate lacks a dense cosine)."""
    q_terms = set(tokenize(query)) if any(c.dense_cos is None for c in candidates) else set()
    for c in candidates:
        c.confidence = confidence(c, q_terms, dense_calibration, rerank_calibration)


def decide(candidates: list[Candidate], policy: GuardPolicy, stage_reasons: list[Reason],
           confidence: float | None = None) -> GuardDecision:
    """Apply the thresholds to already-scored candidates (``confidence`` filled in by :func:`score`, or by the
    relevance judge).

    ``confidence`` is the answer-level probability when the relevance judge gave one; without it the
    answer is as confident as its best chunk. With it, that probability alone decides whether there is an
    answer, and the chunk threshold only trims the context: the first chunk always stays (a judged chunk
    probability is the chance that this one chunk is evidence, often low for every chunk of an answerable head).
    """
    reasons = list(stage_reasons)
    if not candidates:
        if Reason.EMPTY_INDEX not in reasons:
            reasons.append(Reason.NO_CANDIDATES)
        return GuardDecision(Status.NO_RELEVANT_CONTEXT, reasons, 0.0, [])
    top = max(c.confidence for c in candidates) if confidence is None else confidence
    kept = [c for i, c in enumerate(candidates)
            if c.confidence >= policy.min_chunk_confidence or (i == 0 and confidence is not None)]
    if not kept:
        reasons.append(Reason.BELOW_RELEVANCE_THRESHOLD)
        return GuardDecision(Status.NO_RELEVANT_CONTEXT, reasons, top, [])
    if top < policy.min_confidence:
        reasons.append(Reason.LOW_CONFIDENCE)
        return GuardDecision(Status.NO_RELEVANT_CONTEXT, reasons, top, [])
    status = Status.DEGRADED if any(r in DEGRADING for r in reasons) else Status.OK
    return GuardDecision(status, reasons, top, kept)
