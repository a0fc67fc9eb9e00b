"""Adaptive rerank depth: spend the reranker's budget where fusion is unsure.

When the fused top-1 is also the dense leg's clear favourite (its cosine leads
the best chunk of any *other* document by a margin), a reranker rarely
changes the top of the list, so the pipeline reranks a shorter head or none
at all, and says so (``rerank_shortened_confident`` / ``rerank_skipped_confident``:
not degradations). The margin is chosen on validation data so that nDCG@10
does not drop (``fathom bench rerank-curve --adaptive`` measures it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fathom.retrieval.rerank.interface import Candidate


@dataclass(frozen=True, slots=True)
class AdaptivePolicy:
    margin: float                     # dense-cosine lead over the runner-up document that counts as decisive
    confident_depth: int              # depth when decisive; 0 skips reranking


@dataclass(frozen=True, slots=True)
class DepthDecision:
    depth: int
    confident: bool
    lead: float | None                # the measured lead (None: no dense signal, e.g. BM25 only)


def dense_lead(head: Sequence[Candidate]) -> float | None:
    """Cosine of the fused top-1 minus the best cosine of a chunk from another document.

    Negative when another document is closer in the dense space (the legs
    disagree); None without dense cosines or without a second document.
    """
    if not head or head[0].dense_cos is None:
        return None
    top = head[0]
    others = [c.dense_cos for c in head[1:] if c.dense_cos is not None and c.hit.document_id != top.hit.document_id]
    if not others:
        return None
    return top.dense_cos - max(others)


def decide_depth(head: Sequence[Candidate], depth: int, policy: AdaptivePolicy) -> DepthDecision:
    """The depth to rerank ``head`` (the fused candidates up to the configured depth) at."""
    lead = dense_lead(head)
    if lead is not None and lead >= policy.margin:
        return DepthDecision(min(policy.confident_depth, depth), True, lead)
    return DepthDecision(depth, False, lead)
