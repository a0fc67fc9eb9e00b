"""Build retrieval components from settings (store, model sessions, reranker, pipeline).

The one place the retrieval pipeline's stage list is wired (:func:`build_pipeline`).

Model sessions are expensive (hundreds of ms and tens of MB each), so a
:class:`Models` bundle is loaded once per process and shared by the
pipeline, the indexer and the chunker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fathom.retrieval.bm25 import Bm25Encoder, Bm25Params
from fathom.retrieval.calibration import Logistic
from fathom.retrieval.judge.calibration import JudgeModel, TenantCalibrations
from fathom.retrieval.judge.judge import RelevanceJudge
from fathom.retrieval.models.embedder import OnnxEmbedder, load_embedder
from fathom.retrieval.models.specs import MINILM, MPNET
from fathom.retrieval.query_pipeline import RetrievalPipeline
from fathom.retrieval.rerank.interface import Reranker
from fathom.retrieval.rerank.bi_encoder import BiEncoderRescorer
from fathom.retrieval.stages import (AttachVectors, EmbedQuery, FirstStageSearch, FlagInjection, Guard, Judge,
                                     Rerank, ResolveIndex)
from fathom.config import Settings
from fathom.retrieval.store.contract import VectorStore


@dataclass
class Models:
    dense: OnnxEmbedder
    rerank: OnnxEmbedder | None = None    # mpnet, for index-time vectors and query-time rescoring


def open_store(settings: Settings) -> VectorStore:
    s = settings.store
    if s.backend == "server":
        from fathom.retrieval.store.server_store import ClusterOptions, ServerStore

        if not s.url:
            raise ValueError("FATHOM_STORE__URL is required with FATHOM_STORE__BACKEND=server")
        cluster = ClusterOptions(shard_number=s.shard_number, replication_factor=s.replication_factor,
                                 write_consistency_factor=s.write_consistency_factor,
                                 read_consistency=s.read_consistency, write_ordering=s.write_ordering,
                                 retries=s.retries, backoff_s=s.retry_backoff_s)
        return ServerStore.from_url(s.url, api_key=s.api_key, timeout_s=s.timeout_s, prefix=s.collection_prefix,
                                    hnsw_m=s.hnsw_m, hnsw_ef_construct=s.hnsw_ef_construct, cluster=cluster)
    from fathom.retrieval.store.edge_store import EdgeStore

    return EdgeStore(Path(settings.state_path) / "edge", hnsw_m=s.hnsw_m, hnsw_ef_construct=s.hnsw_ef_construct)


def load_models(settings: Settings, *, with_rerank: bool | None = None) -> Models:
    """The dense embedder always; mpnet when the mpnet reranker or index-time mpnet vectors need it."""
    need_mpnet = (settings.rerank.kind == "mpnet" or settings.ingest.embed_mpnet) if with_rerank is None else with_rerank
    return Models(dense=load_embedder(MINILM, settings), rerank=load_embedder(MPNET, settings) if need_mpnet else None)


def build_reranker(settings: Settings, models: Models) -> Reranker | None:
    kind = settings.rerank.kind
    if kind == "none":
        return None
    if kind == "mpnet":
        if models.rerank is None:
            raise ValueError("the mpnet reranker needs the mpnet model loaded")
        return BiEncoderRescorer(models.rerank, weight=settings.rerank.mpnet_weight,
                                 calibration=(Logistic(*settings.rerank.mpnet_calibration)
                                              if settings.rerank.mpnet_calibration else None))
    from fathom.retrieval.rerank.cross_encoder import CrossEncoderReranker

    k = settings.rerank
    if k.cross_encoder_dir is None and k.cross_encoder_name is None:
        raise ValueError("FATHOM_RERANK__CROSS_ENCODER_DIR or FATHOM_RERANK__CROSS_ENCODER_NAME is required with "
                         "FATHOM_RERANK__KIND=cross-encoder")
    path = k.cross_encoder_dir or settings.model_dir / "rerankers" / str(k.cross_encoder_name)
    return CrossEncoderReranker.from_dir(path, threads=k.threads or settings.models.threads)


def rerank_sizes(settings: Settings, reranker: Reranker | None) -> tuple[int, int]:
    """(depth, max_length) served: the settings when set, else the reranker's own defaults (a trained
    cross-encoder's card: the length it was trained at, the depth its rerank curve fits into the latency
    budget), else the kind-wide ones (``RerankSettings.sizes``)."""
    if reranker is None:
        return settings.rerank.sizes()
    return settings.rerank.sizes(reranker.default_depth, reranker.default_max_length)


def build_judge(settings: Settings, calibrations: TenantCalibrations | None = None) -> RelevanceJudge | None:
    """The relevance judge: the shipped (or configured) model, and the tenants' calibrations (the service passes
    its registry-backed ones; by default files under the state dir)."""
    j = settings.judge
    if not j.enabled:
        return None
    model = JudgeModel.load(j.model) if j.model else JudgeModel.load()
    if calibrations is None:
        calibrations = TenantCalibrations(settings.judge_calibration_dir)
    return RelevanceJudge(model, topic=Logistic(*settings.guard.dense_calibration), tenants=calibrations,
                          budget_ms=j.budget_ms)


def build_pipeline(settings: Settings, store: VectorStore, models: Models, reranker: Reranker | None = None,
                   calibrations: TenantCalibrations | None = None) -> RetrievalPipeline:
    """The standard stage list. A new stage (an access filter, a pair scorer for the judge) goes here."""
    r = settings.retrieval
    reranker = reranker if reranker is not None else build_reranker(settings, models)
    depth, max_length = rerank_sizes(settings, reranker)
    judge = build_judge(settings, calibrations)
    return RetrievalPipeline([
        ResolveIndex(store),
        EmbedQuery(models.dense),
        FirstStageSearch(store, Bm25Encoder(Bm25Params(r.bm25_k1, r.bm25_b)), r, hnsw_ef=settings.store.hnsw_ef),
        AttachVectors(store),
        Rerank(reranker, settings.rerank.model_copy(update={"depth": depth, "max_length": max_length})),
        *([Judge(judge, order=settings.judge.order)] if judge is not None else []),
        Guard(Logistic(*settings.guard.dense_calibration)),
        FlagInjection(),
    ])
