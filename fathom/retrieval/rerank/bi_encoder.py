"""Second-stage rescoring with a stronger bi-encoder whose passage vectors were stored at index time.

all-mpnet-base-v2 embeds only ~11-16 passages/s here, far too slow to run on
50 passages per query, but a single query embedding costs ~15-20 ms. So the
passage side is computed once at ingest (the ``mpnet`` named vector) and the
query side at search time; rescoring is then a dot product.

The final score blends the mpnet cosine with the first-stage MiniLM cosine:
two independent dense views of the same pair agree more often than either
alone (measured in fathom/benchmarks/quality.py, tuned on SciFact *train* queries).
"""

from __future__ import annotations

import numpy as np

from fathom.retrieval.calibration import Logistic
from fathom.retrieval.models.embedder import OnnxEmbedder
from fathom.retrieval.rerank.interface import Candidate, Deadline
from fathom.retrieval.store.contract import RERANK


class BiEncoderRescorer:
    name = "mpnet-rescore"
    needs_vectors = (RERANK,)
    default_depth: int | None = None
    default_max_length: int | None = None

    def __init__(self, embedder: OnnxEmbedder, *, weight: float = 0.5, calibration: Logistic | None = None):
        self.embedder = embedder
        self.weight = weight
        self.calibration = calibration

    def score(self, query: str, candidates: list[Candidate], *, max_length: int, deadline: Deadline) -> list[float]:
        if not candidates:
            return []
        missing = [c.hit.id for c in candidates if RERANK not in c.hit.vectors]
        if missing:
            raise LookupError(f"{len(missing)} candidates have no stored {RERANK} vector (index built without it)")
        q = self.embedder.embed_query(query)
        deadline.check("mpnet query embedding")
        passages = np.stack([c.hit.vectors[RERANK] for c in candidates])
        passages /= np.linalg.norm(passages, axis=1, keepdims=True) + 1e-12
        cos = passages @ q
        out = []
        for c, m in zip(candidates, cos):
            d = c.dense_cos if c.dense_cos is not None else float(m)
            out.append(float(self.weight * m + (1.0 - self.weight) * d))
        return out

    def confidence(self, score: float) -> float | None:
        """None while uncalibrated: the pipeline then judges the chunk by its calibrated dense cosine."""
        return self.calibration(score) if self.calibration is not None else None
