"""The second-stage contract.

A reranker receives the fused first-stage candidates (with any stored vectors
it asked for) and returns one score per candidate. It also maps its own score
scale to a confidence in [0, 1] so the guard can judge relevance no matter
which reranker ran.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from fathom.retrieval.store.contract import Hit


class RerankTimeout(TimeoutError):
    """The reranker passed its time budget; the pipeline falls back to the fused order."""


@dataclass(slots=True)
class Candidate:
    """A first-stage result on its way through reranking and the guard."""

    hit: Hit
    fused_score: float
    fused_rank: int                      # 0-based rank after fusion
    dense_cos: float | None = None       # cosine of the query and chunk embeddings (absolute relevance signal)
    term_coverage: float | None = None   # share of query terms present in the chunk
    rerank_score: float | None = None
    confidence: float = 0.0
    # Content flags -> what matched (e.g. {"prompt_injection": ["jailbreak"]}); flagged, never dropped.
    flags: dict[str, list[str]] = field(default_factory=dict)
    # Per flag, the returned fields it was found in (e.g. {"prompt_injection": ["metadata.title"]}).
    flag_fields: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Deadline:
    """A point in monotonic time; stages check it between units of work."""

    at: float

    @classmethod
    def after_ms(cls, ms: float) -> "Deadline":
        return cls(time.monotonic() + ms / 1000.0)

    def remaining_ms(self) -> float:
        return (self.at - time.monotonic()) * 1000.0

    def check(self, what: str) -> None:
        if time.monotonic() > self.at:
            raise RerankTimeout(f"{what} passed its time budget")


class Reranker(Protocol):
    name: str
    # Stored vectors the first stage must return with each candidate (e.g. ("mpnet",)).
    needs_vectors: tuple[str, ...]
    # The depth and token length this reranker is served at when the settings name none (a trained
    # cross-encoder's card); None: the kind-wide defaults (fathom.retrieval.components.rerank_sizes).
    default_depth: int | None
    default_max_length: int | None

    def score(self, query: str, candidates: list[Candidate], *, max_length: int, deadline: Deadline) -> list[float]:
        """One score per candidate, higher is better; may raise RerankTimeout."""
        ...

    def confidence(self, score: float) -> float | None:
        """This reranker's score mapped to a probability in [0, 1]; None if it has no fitted calibration."""
        ...
