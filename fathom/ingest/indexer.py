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
from fathom.retrieval.context.facts import PAYLOAD_KEY as FACTS_KEY
from fathom.retrieval.context.facts import chunk_facts
from fathom.retrieval.context.sketch import PAYLOAD_KEY as SKETCH_KEY
from fathom.retrieval.context.sketch import VocabularySketch
from fathom.retrieval.context.tokens import PromptTokenizer
from fathom.retrieval.models.embed_cache import EmbeddingCache
from fathom.retrieval.models.embedder import OnnxEmbedder, SpanJob, read_manifest
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
    rerank: np.ndarray | None = None      # mpnet vectors, one row per chunk, once Indexer.encode made them


@dataclass(frozen=True, slots=True)
class PoolRequest:
    """Pooled token states a chunker asks for: encoder sequences, and one cache key per pooled span.

    ``unit``: a whole-passage encode, cached by its text as a unit vector (the
    same entry a plain ``embed`` of that text makes). Otherwise the spans'
    mean states are cached unnormalised, so the caller can combine them (a
    chunk's mean is the token-weighted mean of its sentences'). ``where``
    maps key ``i`` to ``(job, span)``; ``None`` means job 0's spans in order.
    """

    jobs: tuple[SpanJob, ...]
    keys: tuple[str, ...]
    unit: bool = False
    where: tuple[tuple[int, int], ...] | None = None

    def locate(self, i: int) -> tuple[int, int]:
        return self.where[i] if self.where is not None else (0, i)


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
                 batch_size: int = 32, prompt_tokenizer: PromptTokenizer | None = None):
        self.dense = dense
        # Counts each chunk and its sentences once, for context assembly (None: assembly counts at query time).
        self.prompt_tokenizer = prompt_tokenizer
        self.rerank = rerank
        self.cache = cache
        self.batch_size = batch_size
        self._dense_id = model_identity(dense)
        self._rerank_id = model_identity(rerank) if rerank else None
        self.embedded = 0   # passages actually run through a model (cache misses), for idempotency checks
        self.seconds: dict[str, float] = {"dense": 0.0, "rerank": 0.0}   # model time, for throughput reports

    @property
    def model_seconds(self) -> float:
        """Encoder time so far (every model), for per-stage reports."""
        return self.seconds["dense"] + self.seconds["rerank"]

    def encode(self, docs: Sequence[DocumentChunks], *, with_rerank: bool) -> None:
        """Give every chunk its dense vector (a late chunker brought most already) and, if asked, mpnet vectors.

        Run before the write lock, so that the write itself (``points``) only
        builds BM25 vectors and payloads and can overlap the next batch's encoding.
        """
        missing = [c for d in docs for c in d.chunks if c.vector is None]
        if missing:
            for c, v in zip(missing, self.embed_dense([c.index_text for c in missing])):
                c.vector = v
        if with_rerank and self.rerank is not None:
            todo = [d for d in docs if d.rerank is None and d.chunks]
            if todo:
                t0 = time.perf_counter()
                vecs = self._embed(self.rerank, self._rerank_id or "", [c.index_text for d in todo for c in d.chunks])
                self.seconds["rerank"] += time.perf_counter() - t0
                offset = 0
                for d in todo:
                    d.rerank = vecs[offset:offset + len(d.chunks)]
                    offset += len(d.chunks)

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
        t0 = time.perf_counter()
        try:
            return self._embed(self.dense, self._dense_id, list(texts))
        finally:
            self.seconds["dense"] += time.perf_counter() - t0

    # --- one pass per section (late chunking) -------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> list[Any]:
        """The dense model's encodings of ``texts``, untruncated, with offsets."""
        return self.dense.tokenize(texts)

    def pool(self, requests: Sequence[PoolRequest]) -> list[np.ndarray]:
        """``(len(keys), dim)`` pooled states per request; requests whose keys are all cached run nothing."""
        if not requests:
            return []
        if self.cache is None:
            return self._run_requests(requests, range(len(requests)))
        owner: dict[str, tuple[int, int]] = {}
        flat: list[str] = []
        for r, req in enumerate(requests):
            for k, key in enumerate(req.keys):
                owner.setdefault(key, (r, k))
                flat.append(key)

        def compute(missing: Sequence[str]) -> np.ndarray:
            need = sorted({owner[key][0] for key in missing})
            done = dict(zip(need, self._run_requests(requests, need)))
            return np.stack([done[owner[key][0]][owner[key][1]] for key in missing])

        vecs = self.cache.get_or_compute(self._dense_id, flat, compute, self.dense.dim)
        out, offset = [], 0
        for req in requests:
            out.append(vecs[offset:offset + len(req.keys)])
            offset += len(req.keys)
        return out

    def _run_requests(self, requests: Sequence[PoolRequest], which: Sequence[int]) -> list[np.ndarray]:
        jobs = [(r, j) for r in which for j in range(len(requests[r].jobs))]
        t0 = time.perf_counter()
        pooled = self.dense.pool_spans([requests[r].jobs[j] for r, j in jobs], max_rows=self.batch_size)
        self.seconds["dense"] += time.perf_counter() - t0
        self.embedded += len(jobs)
        by_job = dict(zip(jobs, pooled))
        out = []
        for r in which:
            req = requests[r]
            vecs = np.stack([by_job[(r, j)][s] for j, s in (req.locate(i) for i in range(len(req.keys)))])
            if req.unit:
                vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
            out.append(vecs.astype(np.float32, copy=False))
        return out

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
        dense = np.empty((len(flat), self.dense.dim), dtype=np.float32)
        todo = [row for row, (_, _, c) in enumerate(flat) if c.vector is None]   # a late chunk brings its own
        for row, (_, _, c) in enumerate(flat):
            if c.vector is not None:
                dense[row] = c.vector
        if todo:
            t0 = time.perf_counter()
            dense[todo] = self._embed(self.dense, self._dense_id, [texts[row] for row in todo])
            self.seconds["dense"] += time.perf_counter() - t0
        rerank = None
        if layout.rerank_dim:
            if self.rerank is None:
                raise LayoutMismatch("this tenant's index stores mpnet (rerank) vectors, but this process does not load "
                                     "mpnet: set FATHOM_INGEST__EMBED_MPNET=true, or reindex the tenant without them")
            if all(d.rerank is not None for d in docs):
                rerank = np.concatenate([d.rerank for d in docs if d.chunks])   # type: ignore[misc]
            else:
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
                SKETCH_KEY: VocabularySketch.of_text(chunk.text).to_payload(),
            }
            if self.prompt_tokenizer is not None:
                payload[FACTS_KEY] = chunk_facts(chunk.text, self.prompt_tokenizer).to_payload()
            out.append(ChunkPoint(
                id=point_id(tenant, doc.document_id, doc.doc_version, idx),
                dense=dense[row],
                sparse=bm25.encode_tokens(tokens, layout.bm25_avgdl),
                payload=payload,
                rerank=rerank[row] if rerank is not None else None,
            ))
        return out
