"""Build the ingestion pipeline from settings, sharing the process's model sessions."""

from __future__ import annotations

from fathom.ingest.chunkers import build_chunker as build_chunker_from_spec
from fathom.ingest.chunking import ChunkerSpec
from fathom.ingest.indexer import Indexer
from fathom.ingest.pii import PiiScanner
from fathom.ingest.ingest_pipeline import Chunker, IngestPipeline
from fathom.ingest.registry import Registry
from fathom.retrieval.bm25 import Bm25Params
from fathom.retrieval.components import Models
from fathom.retrieval.context.tokens import load_tokenizer
from fathom.retrieval.models.embed_cache import EmbeddingCache
from fathom.config import Settings
from fathom.retrieval.store.contract import VectorStore


def chunker_spec(settings: Settings, kind: str | None = None, max_tokens: int | None = None) -> ChunkerSpec:
    """The configured chunking, optionally with another kind or token budget (what a reindex may ask for).

    Small budgets scale the other sizes down: fixed windows overlap by a
    quarter of the budget (at most 32 tokens; an overlap as large as the window
    would restart every window one word later), and semantic chunks merge up to
    half of it.
    """
    ing = settings.ingest
    budget = max_tokens or ing.max_chunk_tokens
    return ChunkerSpec(kind or ing.chunker, budget, min(ing.min_chunk_tokens, budget // 2),  # type: ignore[arg-type]
                       ing.semantic_breakpoint_percentile, overlap=min(32, budget // 4), window=ing.late_window)


def build_chunker(settings: Settings, indexer: Indexer, kind: str | None = None) -> Chunker:
    """The configured chunker; sentence embeddings for breakpoints (and late chunking's section passes) go
    through the indexer (batched, cached)."""
    return build_chunker_from_spec(chunker_spec(settings, kind), indexer.dense, indexer.embed_dense, indexer)


def build_ingest(settings: Settings, store: VectorStore, registry: Registry, models: Models, *,
                 chunker: str | None = None, cache: EmbeddingCache | None = None) -> IngestPipeline:
    indexer = Indexer(models.dense, rerank=models.rerank if settings.ingest.embed_mpnet else None,
                      cache=cache, batch_size=settings.models.embed_batch_size,
                      prompt_tokenizer=load_tokenizer(settings.context.tokenizer))
    return IngestPipeline(
        store, registry, indexer, build_chunker(settings, indexer, chunker),
        bm25=Bm25Params(settings.retrieval.bm25_k1, settings.retrieval.bm25_b),
        pii=PiiScanner(redact=settings.ingest.redact_pii),
        with_rerank_vectors=settings.ingest.embed_mpnet, overlap_writes=settings.ingest.overlap_writes,
        batch_docs=settings.ingest.batch_documents,
    )
