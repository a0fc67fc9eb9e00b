"""A chunker from its spec: the one place that knows every kind (chunking.py, late_chunking.py)."""

from __future__ import annotations

from fathom.ingest.chunking import ChunkerSpec, FixedSizeChunker, SectionEncoder, SemanticChunker, SentenceEmbedder
from fathom.ingest.chunking import TokenCounter
from fathom.ingest.late_chunking import LateChunker

Chunker = SemanticChunker | FixedSizeChunker | LateChunker


def build_chunker(spec: ChunkerSpec, counter: TokenCounter, embed: SentenceEmbedder | None,
                  encoder: SectionEncoder | None = None) -> Chunker:
    """``counter`` and ``embed`` serve the semantic and fixed chunkers, ``encoder`` (the indexer) the late one."""
    if spec.kind == "fixed":
        return FixedSizeChunker(counter, max_tokens=spec.max_tokens, overlap=spec.overlap)
    if spec.kind == "late":
        if encoder is None:
            raise ValueError("late chunking needs a section encoder")
        return LateChunker(encoder, max_tokens=spec.max_tokens, min_tokens=spec.min_tokens,
                           breakpoint_percentile=spec.breakpoint_percentile, window=spec.window)
    return SemanticChunker(counter, embed=embed, max_tokens=spec.max_tokens, min_tokens=spec.min_tokens,
                           breakpoint_percentile=spec.breakpoint_percentile)
