"""Fathom's settings at the base of the package: what retrieval and ingestion read.

Every knob is an environment variable with the ``FATHOM_`` prefix; nested groups
use ``__`` (``FATHOM_RERANK__DEPTH=50``). Each default is written once, here or
beside the layer that alone reads it: the service's groups in
``fathom/service/core/config.py`` (composed onto this root there), the
benchmarks' data directory in ``fathom/benchmarks/config.py``. This module
imports nothing else of Fathom (tests/contract/test_layering.py checks it), so every
layer can read it.

Paths default to a ``.fathom/`` folder beside the current working directory so
that a fresh checkout never picks up state or models from somewhere else.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

class ModelSettings(BaseModel):
    """Where models live and how their runtime sessions are sized."""

    dir: Path | None = Field(None, description="Model cache; default <home>/models")
    threads: int = Field(2, ge=1, description="onnxruntime intra-op threads per session")
    embed_batch_size: int = Field(32, ge=1, description="Most texts per encoder call")
    # Measured on 2 cores (README.16.md): passages/s of the int8 MiniLM fell with the padded batch size - CACM's
    # 25-token records 310-330/s at 256 tokens per call, 300-310 at 512, 250-270 at 1024, 100-120 at 8192 (the old
    # 32 rows x 256); SciFact's abstracts 23-30/s at 256, 21-23 at 1024. Small calls keep the activations in cache.
    embed_batch_tokens: int = Field(256, ge=16, description="Most padded tokens per encoder call (length-bucketed "
                                                            "batches; one longer text still goes alone)")
    quantized: bool = Field(True, description="Serve the int8 embedder (verified at prepare time)")
    # Spinning keeps intra-op threads busy-waiting for the next parallel section after a run ends; with several
    # request threads and 2 cores that steals the CPU the next request (or the store query) needs. Off measured
    # about half the CPU per query embedding and twice the throughput at 4 concurrent (README: Performance).
    allow_spinning: bool = Field(False, description="onnxruntime intra-op thread spin-waiting between runs")


class StoreSettings(BaseModel):
    """Vector store backend.

    ``edge`` is the embedded Qdrant engine (one process owns the shards);
    ``server`` talks to a Qdrant cluster through qdrant-client.
    """

    backend: Literal["edge", "server"] = "edge"
    url: str | None = Field(None, description="Qdrant server URL (server backend); ':memory:' for local mode")
    api_key: str | None = None
    collection_prefix: str = "fathom"
    # Tuned by `fathom bench hnsw` on the MiniLM vectors of SciFact + CACM (14.4k chunks) and a 100k corpus grown
    # from them: recall@100 of the dense leg vs exact search 0.9956 / 0.9928 (m=16, ef_construct=100, ef=128 gave
    # 0.977 / 0.959); ef_construct 200 costs ~1.6x optimize() time, ef 256 ~+0.3 ms per dense search.
    # Qdrant searches with max(ef, limit), so the hybrid prefetch (retrieval.prefetch_limit 200) never goes lower.
    hnsw_m: int = 16
    hnsw_ef_construct: int = 200
    hnsw_ef: int = 256
    timeout_s: float = 5.0
    # Server backend on a cluster (ignored by the embedded engine). Fixed per collection at creation:
    shard_number: int | None = Field(None, description="Shards per collection (server default: one per node)")
    replication_factor: int | None = Field(None, description="Copies of each shard; 2+ survives a node loss")
    write_consistency_factor: int | None = Field(None, description="Replicas that must acknowledge a write")
    # Per request:
    read_consistency: str | None = Field(None, pattern=r"^(majority|quorum|all|[1-9][0-9]*)$",
                                         description="majority | quorum | all | <replica count>")
    write_ordering: Literal["weak", "medium", "strong"] | None = None
    retries: int = Field(3, ge=0, description="Retries of a transient failure (transport, timeout, 5xx, 429)")
    retry_backoff_s: float = Field(0.1, gt=0, description="First retry delay; doubles per retry, capped at 2 s")


class RetrievalSettings(BaseModel):
    """First stage: hybrid BM25 + dense search and fusion."""

    # `fathom bench quality` on SciFact test (MiniLM int8, semantic chunks, 200 per leg): DBSF nDCG@10 0.7311,
    # R@100 0.9610; RRF k=2 0.7211 / 0.9560 (Qdrant's published tuning: 0.732 / 0.7175).
    fusion: Literal["rrf", "dbsf"] = Field("dbsf", description="Fusion of the BM25 and dense legs")
    rrf_k: int = Field(2, ge=1, description="RRF constant; Qdrant's tuning on SciFact found k=2 best")
    prefetch_limit: int = Field(200, ge=1, description="Candidates per leg before fusion")
    bm25_k1: float = 0.9
    bm25_b: float = 0.4
    max_top_k: int = 100


# Default rerank depth `fathom reranker train|distil` writes to a model's card: the deepest at which the 2-layer
# student's rerank stage stays under 40 ms P95 on 2 cores (README > Benchmarks, the rerank curve).
CROSS_ENCODER_SERVE_DEPTH = 10
# Rerank sizes when neither the settings nor the reranker name them (the mpnet rescoring's measured defaults).
DEFAULT_RERANK_DEPTH = 50
DEFAULT_RERANK_MAX_LENGTH = 256


class RerankSettings(BaseModel):
    """Second stage. ``kind`` selects the implementation behind the Reranker interface."""

    # none by measurement (README > What the rerankers earn): mpnet rescoring made CACM ingest 3.5x slower and
    # lowered its nDCG@10; the cross-encoders need a 70-minute training and lose on other domains.
    kind: Literal["none", "mpnet", "cross-encoder"] = "none"
    depth: int | None = Field(None, ge=1, description="Fused candidates handed to the reranker (default: a trained "
                                                       "cross-encoder's card, else 50)")
    max_length: int | None = Field(None, ge=16, description="Token limit per query-passage input (default: the "
                                                             "length a trained cross-encoder was trained at, else 256)")
    budget_ms: float = Field(250.0, gt=0, description="Past this the fused order is returned, flagged degraded")
    cross_encoder_dir: Path | None = Field(None, description="HF-format cross-encoder folder (exported to ONNX on first use)")
    mpnet_weight: float = Field(0.5, ge=0, le=1, description="Blend of mpnet cosine vs first-stage cosine")
    # sigmoid(a * score + b) of the mpnet rescoring score, once fitted with `fathom bench calibrate` on an index
    # with mpnet vectors. Unset (the default): the guard judges mpnet-reranked chunks by their first-stage dense
    # cosine (GuardSettings.dense_calibration, which was fitted), never by an unfitted mapping.
    mpnet_calibration: tuple[float, float] | None = None
    adaptive: bool = Field(False, description="Skip/shorten reranking when fusion is already confident (opt-in: "
                                               "measure the margin with `fathom bench rerank-curve --adaptive`)")
    adaptive_margin: float = Field(0.10, description="Dense-cosine lead of the fused top-1 over the next document "
                                                      "that counts as confident (adaptive depth)")
    confident_depth: int = Field(0, ge=0, description="Depth reranked when fusion is confident; 0 skips reranking")
    cross_encoder_name: str | None = Field(None, description="A reranker trained by `fathom reranker train`, by name "
                                                              "under <model_dir>/rerankers/ (cross_encoder_dir wins)")
    threads: int | None = Field(None, ge=1, description="onnxruntime intra-op threads of the cross-encoder session; "
                                                         "default models.threads")

    def sizes(self, own_depth: int | None = None, own_max_length: int | None = None) -> tuple[int, int]:
        """(depth, max_length) served: these settings when set, else the reranker's own (a trained
        cross-encoder's card), else the kind-wide defaults.

        A 2-layer model trained on 128 tokens served at the mpnet rescoring's 50 x 256 would cost ~5x the
        time for no measured gain, so a card's sizes beat the kind-wide ones.
        """
        return (self.depth or own_depth or DEFAULT_RERANK_DEPTH,
                self.max_length or own_max_length or DEFAULT_RERANK_MAX_LENGTH)


class GuardSettings(BaseModel):
    """Empty-context guard thresholds (defaults; tenants may override)."""

    # With the relevance judge (hybrid queries), `confidence` is the probability that the judged head holds evidence
    # for the query and a chunk's is the probability that it is evidence (fathom/retrieval/judge/). The defaults are
    # the judge's operating point on SciFact *train* (`fathom judge fit`, weights/judge.json "operating_point", read
    # out of fold): at most 5 % of the answerable examples under min_confidence, 98 % of their evidence chunks above
    # min_chunk_confidence. Other modes read the dense-cosine logistic below (or BM25 term coverage).
    min_confidence: float = Field(0.106, ge=0, le=1, description="Below this the response is no_relevant_context")
    min_chunk_confidence: float = Field(0.016, ge=0, le=1, description="Chunks under this are dropped as junk")
    # sigmoid(a * cosine + b) for the first-stage dense cosine, used when no reranker scored a chunk.
    # Fitted by `fathom bench calibrate` on SciFact train (809 queries) vs fathom/benchmarks/offtopic_calibration.txt.
    dense_calibration: tuple[float, float] = (31.39, -13.39)


class JudgeSettings(BaseModel):
    """The relevance judge between rerank and guard (fathom/retrieval/judge/): per-chunk evidence probabilities
    and the answer-level confidence the guard thresholds. Runs on hybrid queries."""

    enabled: bool = Field(True, description="Judge hybrid answers; off: the guard reads the dense-cosine logistic")
    budget_ms: float = Field(100.0, gt=0, description="Past this the judge's verdict is dropped and the answer is "
                                                        "degraded (judge_timeout)")
    order: bool = Field(False, description="Serve the head in the judge's chunk-probability order (off: the "
                                           "first stage's; `fathom bench quality` measured no gain)")
    model: Path | None = Field(None, description="Judge model JSON (default: the one shipped in the package)")
    calibration_dir: Path | None = Field(None, description="Per-tenant calibrations outside the service "
                                                           "(benchmarks; default <state>/judge). The service keeps "
                                                           "them in the registry and still reads old files here")
    calibrate_on_reindex: bool = Field(True, description="A reindex of a tenant with a golden set refits its "
                                                         "calibration on the new version (two queries per golden "
                                                         "query, after the swap)")


class IngestSettings(BaseModel):
    # late by measurement (README "Ingestion" benchmark): the semantic chunker's cuts and vectors from one encoder pass per section,
    # hybrid nDCG@10 / R@100 within 0.005 of semantic on SciFact and CACM, 8.5x fewer encoder passes on SciFact.
    chunker: Literal["semantic", "fixed", "late"] = "late"
    max_chunk_tokens: int = 256
    min_chunk_tokens: int = 48
    semantic_breakpoint_percentile: float = 90.0
    batch_documents: int = Field(64, ge=1, description="Documents per pipeline batch: encoded together, and "
                                                       "recorded in the registry in one transaction")
    overlap_writes: bool = Field(True, description="Write batch n (BM25, store, registry) in a worker thread while "
                                                   "batch n + 1 is parsed, chunked and encoded")
    late_window: int = Field(512, ge=32, le=512, description="late chunking: tokens per encoder pass over a section "
                                                             "(MiniLM has 512 positions)")
    redact_pii: bool = False
    min_text_chars: int = 20
    embed_mpnet: bool = Field(False, description="Compute mpnet vectors at index time (only the mpnet reranker "
                                                 "reads them; ~3.5x the ingest time)")
    max_document_bytes: int = Field(10 * 1024 * 1024, ge=1, description="Per-file limit of POST /v1/documents; "
                                                                          "a larger file fails alone (too_large)")
    max_batch_documents: int = Field(100, ge=1, description="Documents per POST /v1/documents request")
    # Zip-based formats (DOCX, XLSX, PPTX, ODT, EPUB) are checked from the zip's central directory before any
    # parser inflates them: a 300 KB upload can hold gigabytes of zeros (a "zip bomb").
    max_archive_uncompressed_bytes: int = Field(
        256 * 1024 * 1024, ge=1, description="Most a zip-based document may inflate to (all members together); "
                                             "over it the document fails (decompression_bomb)")
    max_archive_ratio: float = Field(
        200.0, gt=1, description="Most a zip member over 1 MiB may inflate relative to its compressed size "
                                 "(text XML reaches ~10-50x; bombs ~1000x)")


class ContextSettings(BaseModel):
    """Context assembly (``max_context_tokens`` and friends on /v1/retrieve; fathom/retrieval/context/)."""

    tokenizer: str = Field("approx", description="How prompt tokens are counted: 'approx' (a calibrated estimate, "
                                                 "no vocabulary), 'cl100k_base' (GPT-4's BPE, shipped offline) or "
                                                 "the path of the app's tokenizer.json")
    default_max_tokens: int | None = Field(None, ge=1, description="Budget when a request names none (tenants may "
                                                                   "set their own); unset: no assembly unless asked")
    max_tokens_limit: int = Field(32768, ge=1, description="Largest max_context_tokens a request may ask for")
    # 0.8: an abstract re-posted with another byline or reflowed still collapses; two abstracts on one topic share
    # far fewer word 3-grams (fathom/retrieval/context/dedup.py).
    dedup_threshold: float = Field(0.8, gt=0, le=1, description="Word 3-gram Jaccard at which passages are duplicates")
    neighbour_tokens: int = Field(128, ge=1, description="expand=neighbours: most tokens added on each side")
    min_fragment_tokens: int = Field(24, ge=1, description="A trimmed passage shorter than this is left out")
    # 160: at 256-1,024 tokens more sources beat more of each for putting judged evidence in the context (SciFact
    # train at 512: evidence recall 0.759 -> 0.773; `fathom bench context`, method `whole-chunks` for None).
    max_passage_tokens: int | None = Field(160, ge=16, description="Default cap per passage (its best sentences) "
                                                                   "when a request names none; None: whole chunks")
    count_cache_chars: int = Field(16_000_000, ge=0, description="Characters of counted texts (chunks, their "
                                                                  "sentences) whose token counts are kept per "
                                                                  "process (0: count every time)")
    document_cache_chars: int = Field(32_000_000, ge=0, description="Characters of stored documents kept in memory "
                                                                    "for assembly (per process; 0: read the registry "
                                                                    "every time)")


class Settings(BaseSettings):
    """The settings retrieval and ingestion read; build it with :func:`get_settings`.

    The service extends it with its own groups (``fathom.service.core.config.Settings``: HTTP, cache, limits,
    Redis, tracing, jobs); the benchmarks keep theirs (``fathom.benchmarks.config``).
    """

    model_config = SettingsConfigDict(env_prefix="FATHOM_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(Path(".fathom"), description="Root for models and state")
    state_dir: Path | None = Field(None, description="Index shards, manifests, registry; default <home>/state")
    registry_url: str | None = Field(None, description="SQLAlchemy URL of the document registry")

    models: ModelSettings = ModelSettings()
    store: StoreSettings = StoreSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    rerank: RerankSettings = RerankSettings()
    guard: GuardSettings = GuardSettings()
    judge: JudgeSettings = JudgeSettings()
    context: ContextSettings = ContextSettings()
    ingest: IngestSettings = IngestSettings()

    @property
    def model_dir(self) -> Path:
        return (self.models.dir or self.home / "models").resolve()

    @property
    def state_path(self) -> Path:
        return (self.state_dir or self.home / "state").resolve()

    @property
    def judge_calibration_dir(self) -> Path:
        return (self.judge.calibration_dir or self.state_path / "judge").resolve()

    @property
    def registry(self) -> str:
        return self.registry_url or f"sqlite:///{self.state_path / 'registry.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once from the environment."""
    return Settings()
