"""Stage ``attach_vectors``: stored vectors for the head candidates only (timed with ``search``)."""

from __future__ import annotations

import numpy as np

from fathom.retrieval.query_pipeline import RetrievalState, Stage
from fathom.retrieval.store.contract import DENSE, IndexRef, VectorStore


class AttachVectors(Stage):
    """The dense vector (its cosine to the query is the absolute relevance signal, ``dense_cos``) and any
    vector a later stage asked for (``Stage.vectors``: the mpnet rescoring's), for the first ``head``."""

    name = "attach_vectors"
    timing = "search"
    reads = frozenset({"query", "version", "dense", "candidates", "head", "vector_names"})
    writes = frozenset({"candidates"})
    parts = ("store",)

    def __init__(self, store: VectorStore):
        self.store = store

    def run(self, state: RetrievalState) -> None:
        dense = state.dense
        head = state.candidates[: state.head]
        names = [DENSE] if dense is not None else []
        names += [n for n in state.vector_names if n not in names]
        vectors = self.store.fetch_vectors(IndexRef(state.query.tenant, state.version), [c.hit.id for c in head], names)
        for c in head:
            c.hit.vectors = vectors.get(c.hit.id, {})
            vec = c.hit.vectors.get(DENSE)
            if dense is not None and vec is not None:
                c.dense_cos = float(vec @ dense / (np.linalg.norm(vec) * np.linalg.norm(dense) + 1e-12))
