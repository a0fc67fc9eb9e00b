"""Stage ``embed``: the query embedding for the dense leg (optional: without it the search is BM25 only)."""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from fathom.retrieval.guard import Reason
from fathom.retrieval.query_pipeline import OnDeadline, RetrievalState, Stage

log = logging.getLogger(__name__)


class QueryEmbedder(Protocol):
    """Anything with ``embed_query(text) -> np.ndarray`` (the ONNX embedder in production)."""

    def embed_query(self, text: str) -> np.ndarray: ...


class EmbedQuery(Stage):
    """Writes ``mode`` (the mode actually searched) and ``dense``.

    ``bm25`` mode embeds nothing; a precomputed ``query.dense`` (the semantic cache's) is used as is; an
    embedder failure falls back to BM25 and says so (``embedder_failed``, degrading).
    """

    name = timing = "embed"
    on_deadline = OnDeadline.FAIL
    reads = frozenset({"query"})
    writes = frozenset({"mode", "dense"})
    parts = ("embedder",)

    def __init__(self, embedder: QueryEmbedder):
        self.embedder = embedder

    def embed(self, text: str) -> np.ndarray:
        """The query vector (raises what the embedder raises). The service embeds once with this and hands
        the vector to both the semantic cache and the pipeline (``RetrievalQuery.dense``)."""
        return np.asarray(self.embedder.embed_query(text), dtype=np.float32)

    def run(self, state: RetrievalState) -> None:
        q = state.query
        if q.mode == "bm25":
            state.mode, state.dense = "bm25", None
        elif q.dense is not None:
            state.mode, state.dense = q.mode, np.asarray(q.dense, dtype=np.float32)
        else:
            try:
                state.mode, state.dense = q.mode, self.embed(q.text)
            except Exception as exc:   # the dense leg is optional: fall back to BM25 and say so
                log.warning("embedder failed, falling back to bm25: %s", exc)
                state.reasons.append(Reason.EMBEDDER_FAILED)
                state.mode, state.dense = "bm25", None
