"""Turn chunks into store points: embeddings (batched, cached), BM25 vectors and payload.

The indexer is the only place that decides what a point looks like, so the
ingest API, the CLI, the reindex job and the benchmarks all write identical
points.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from fathom.ingest.chunking import PATH_SEP, Chunk
from fathom.retrieval.bm25 import Bm25Encoder, Bm25Params, tokenize
from fathom.retrieval.models.embed_cache import EmbeddingCache
from fathom.retrieval.models.embedder import OnnxEmbedder, read_manifest
from fathom.retrieval.store.contract import ChunkPoint, IndexLayout

_NS = uuid.UUID("6f1c1d3e-5b1a-4c52-9a53-7d1f0b7c2a10")


class LayoutMismatch(ValueError):
    """A write cannot fit the index version it goes to (its layout asks for vectors this process cannot make).

    A deployment problem, not bad input: the API answers 409 ``index_layout_mismatch`` with this message.
    """


@dataclass(slots=True)
class DocumentChunks:
    """One document's chunks plus the document-level payload every chunk inherits."""

    document_id: str
    doc_version: int
    chunks: list[Chunk]
    doc_payload: dict[str, Any] = field(default_factory=dict)   # source, filetype, language, tags, content_hash, ...


def model_identity(embedder: OnnxEmbedder) -> str:
    """Name + weights hash + precision: what makes two embeddings of one text interchangeable."""
    model_dir = embedder.model_path.parent
    try:
        sha = str(read_manifest(model_dir).get("source_sha256", ""))[:16]
    except FileNotFoundError:
        sha = "unknown"
    return f"{embedder.spec.name}:{sha}:{'int8' if embedder.quantized else 'fp32'}"


def point_id(tenant: str, document_id: str, doc_version: int, chunk_index: int) -> str:
    return str(uuid.uuid5(_NS, f"{tenant}\x00{document_id}\x00{doc_version}\x00{chunk_index}"))


class Indexer:
    def __init__(self, dense: OnnxEmbedder, *, rerank: OnnxEmbedder | None = None, cache: EmbeddingCache | None = None,
                 batch_size: int = 32):
        self.dense = dense
        self.rerank = rerank
        self.cache = cache
        self.batch_size = batch_size
        self._dense_id = model_identity(dense)
        self._rerank_id = model_identity(rerank) if rerank else None
        self.embedded = 0   # passages actually run through a model (cache misses), for idempotency checks
        self.seconds: dict[str, float] = {"dense": 0.0, "rerank": 0.0}   # model time, for throughput reports

    def layout(self, avgdl: float, params: Bm25Params, build: dict[str, Any] | None = None) -> IndexLayout:
        return IndexLayout(
            dense_dim=self.dense.dim, rerank_dim=self.rerank.dim if self.rerank else None,
            dense_model=self._dense_id, rerank_model=self._rerank_id,
            bm25_k1=params.k1, bm25_b=params.b, bm25_avgdl=avgdl, build=build or {},
        )

    @staticmethod
    def average_length(docs: Sequence[DocumentChunks]) -> float:
        lengths = [len(tokenize(c.index_text)) for d in docs for c in d.chunks]
        return float(np.mean(lengths)) if lengths else 100.0

    def embed_dense(self, texts: Sequence[str]) -> np.ndarray:
        """Dense embeddings through the cache (the chunker's breakpoint sentences use this too)."""
        return self._embed(self.dense, self._dense_id, list(texts))

    def _embed(self, model: OnnxEmbedder, identity: str, texts: list[str]) -> np.ndarray:
        def compute(batch: Sequence[str]) -> np.ndarray:
            self.embedded += len(batch)
            return model.embed(batch, batch_size=self.batch_size)
        if self.cache is None:
            return compute(texts)
        return self.cache.get_or_compute(identity, texts, compute, model.dim)

    def points(self, tenant: str, docs: Sequence[DocumentChunks], layout: IndexLayout) -> list[ChunkPoint]:
        """Encode every chunk of ``docs`` for the index described by ``layout``."""
        flat = [(d, i, c) for d in docs for i, c in enumerate(d.chunks)]
        if not flat:
            return []
        texts = [c.index_text for _, _, c in flat]
        t0 = time.perf_counter()
        dense = self._embed(self.dense, self._dense_id, texts)
        self.seconds["dense"] += time.perf_counter() - t0
        rerank = None
        if layout.rerank_dim:
            if self.rerank is None:
                raise LayoutMismatch("this tenant's index stores mpnet (rerank) vectors, but this process does not load "
                                     "mpnet: set FATHOM_INGEST__EMBED_MPNET=true, or reindex the tenant without them")
            t0 = time.perf_counter()
            rerank = self._embed(self.rerank, self._rerank_id or "", texts)
            self.seconds["rerank"] += time.perf_counter() - t0
        bm25 = Bm25Encoder(Bm25Params(layout.bm25_k1, layout.bm25_b))
        now = datetime.now(UTC).isoformat(timespec="seconds")
        out = []
        for row, (doc, idx, chunk) in enumerate(flat):
            tokens = tokenize(chunk.index_text)
            payload = {
                **doc.doc_payload,
                "tenant_id": tenant,
                "document_id": doc.document_id,
                "doc_version": doc.doc_version,
                "chunk_index": idx,
                "chunk_count": len(doc.chunks),
                "text": chunk.text,
                "section_path": list(chunk.section_path),
                "section": PATH_SEP.join(chunk.section_path),
                "pages": chunk.pages,
                "page": chunk.pages[0] if chunk.pages else None,
                "char_start": chunk.char_start,
                "char_end": chunk.char_end,
                "token_count": chunk.token_count,
                "bm25_len": len(tokens),
                "ingested_at": now,
            }
            out.append(ChunkPoint(
                id=point_id(tenant, doc.document_id, doc.doc_version, idx),
                dense=dense[row],
                sparse=bm25.encode_tokens(tokens, layout.bm25_avgdl),
                payload=payload,
                rerank=rerank[row] if rerank is not None else None,
            ))
        return out
