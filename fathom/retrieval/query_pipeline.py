"""The retrieval pipeline: encode → one hybrid store query → rerank → guard.

One instance serves many concurrent requests (FastAPI's thread pool): it holds
the model sessions (created once) and the store; every call carries its own
tenant, deadline and policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fathom.retrieval.bm25 import Bm25Encoder, tokenize
from fathom.retrieval.calibration import Logistic, ramp
from fathom.retrieval.guard import GuardPolicy, Reason, Status, decide
from fathom.retrieval.rerank.adaptive import AdaptivePolicy, decide_depth
from fathom.retrieval.rerank.interface import Candidate, Deadline, Reranker, RerankTimeout
from fathom.retrieval.store.contract import DENSE, IndexNotFound, IndexRef, MetadataFilter, Mode, SearchRequest, VectorStore
from fathom.retrieval.tenancy import Tenant

log = logging.getLogger(__name__)


class QueryEmbedder:
    """Anything with ``embed_query(text) -> np.ndarray`` (the ONNX embedder in production)."""

    def embed_query(self, text: str) -> np.ndarray: ...  # pragma: no cover - protocol


@dataclass(frozen=True, slots=True)
class FirstStageConfig:
    fusion: str = "dbsf"
    rrf_k: int = 2
    prefetch_limit: int = 200
    hnsw_ef: int | None = 128


@dataclass(frozen=True, slots=True)
class RerankConfig:
    depth: int = 50
    max_length: int = 256
    budget_ms: float = 250.0
    adaptive: bool = False
    adaptive_margin: float = 0.10      # dense-cosine lead that makes fusion's top-1 decisive (fathom/retrieval/rerank/adaptive.py)
    confident_depth: int = 0           # depth reranked when decisive; 0 skips


@dataclass(frozen=True, slots=True)
class RetrievalQuery:
    tenant: Tenant
    text: str
    top_k: int = 10
    mode: Mode = "hybrid"
    rerank: bool = True
    filter: MetadataFilter | None = None
    unique_documents: bool = False     # at most one chunk per document (used by document-level evaluation)
    policy: GuardPolicy = GuardPolicy()
    deadline: Deadline | None = None
    dense: np.ndarray | None = None    # precomputed query embedding (e.g. by the semantic cache), else embedded here
    version: int | None = None         # a given index version (the reindex gate scores one before it goes live); None: live

    def __post_init__(self) -> None:
        if not isinstance(self.tenant, Tenant):
            raise TypeError("RetrievalQuery needs a Tenant")


@dataclass(slots=True)
class RetrievalResult:
    status: Status
    reasons: list[Reason]
    confidence: float
    candidates: list[Candidate]
    reranker: str | None
    index_version: int | None
    timings_ms: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status in (Status.OK, Status.DEGRADED) and not self.candidates:
            raise AssertionError("an empty context is never ok")

    @property
    def degraded(self) -> list[str]:
        from fathom.retrieval.guard import DEGRADING
        return [r.value for r in self.reasons if r in DEGRADING]


class DeadlineExceeded(TimeoutError):
    """The request's deadline passed before the pipeline had any context to return (the API answers 504)."""


class _Timer:
    def __init__(self, span: StageSpan | None = None) -> None:
        self.ms: dict[str, float] = {}
        self.span = span

    def stage(self, name: str) -> "_Stage":
        return _Stage(self, name)


class _Stage:
    def __init__(self, timer: _Timer, name: str):
        self.timer, self.name = timer, name

    def __enter__(self) -> None:
        self.span = self.timer.span(self.name) if self.timer.span else None
        if self.span is not None:
            self.span.__enter__()
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: Any) -> None:
        self.timer.ms[self.name] = self.timer.ms.get(self.name, 0.0) + (time.perf_counter() - self.t0) * 1000.0
        if self.span is not None:
            self.span.__exit__(*exc)


StageHook = Callable[[str, float], None]
# Opens a tracing span around one stage. The service passes OpenTelemetry spans; retrieval stays free of tracing code.
StageSpan = Callable[[str], AbstractContextManager[Any]]


class RetrievalPipeline:
    def __init__(
        self,
        store: VectorStore,
        embedder: QueryEmbedder,
        *,
        bm25: Bm25Encoder | None = None,
        reranker: Reranker | None = None,
        first_stage: FirstStageConfig = FirstStageConfig(),
        rerank: RerankConfig = RerankConfig(),
        dense_calibration: Logistic = Logistic(31.39, -13.39),
    ):
        self.store = store
        self.embedder = embedder
        self.bm25 = bm25 or Bm25Encoder()
        self.reranker = reranker
        self.first_stage = first_stage
        self.rerank_cfg = rerank
        self._dense_calibration = dense_calibration

    # --- stages ------------------------------------------------------------------
    def _encode(self, q: RetrievalQuery, reasons: list[Reason]) -> tuple[Mode, np.ndarray | None]:
        if q.mode == "bm25":
            return "bm25", None
        if q.dense is not None:
            return q.mode, np.asarray(q.dense, dtype=np.float32)
        try:
            return q.mode, np.asarray(self.embedder.embed_query(q.text), dtype=np.float32)
        except Exception as exc:   # the dense leg is optional: fall back to BM25 and say so
            log.warning("embedder failed, falling back to bm25: %s", exc)
            reasons.append(Reason.EMBEDDER_FAILED)
            return "bm25", None

    def _search(self, q: RetrievalQuery, mode: Mode, dense: np.ndarray | None, limit: int, version: int) -> list[Candidate]:
        fs = self.first_stage
        req = SearchRequest(
            tenant=q.tenant, mode=mode, limit=limit, dense=dense, sparse=self.bm25.encode_query(q.text),
            prefetch_limit=max(fs.prefetch_limit, limit), fusion=fs.fusion, rrf_k=fs.rrf_k,  # type: ignore[arg-type]
            hnsw_ef=fs.hnsw_ef, filter=q.filter, version=version,
        )
        # Ties in fused scores come back in no fixed order; break them by id so a query is repeatable
        # (the reindex gate compares recall across versions and must not see noise).
        hits = sorted(_drop_superseded(self.store.search(req)), key=lambda h: (-h.score, h.id))
        if q.unique_documents:
            seen: set[str] = set()
            hits = [h for h in hits if not (h.document_id in seen or seen.add(h.document_id))]
        return [Candidate(hit=h, fused_score=h.score, fused_rank=i) for i, h in enumerate(hits)]

    def _attach_vectors(self, q: RetrievalQuery, version: int, dense: np.ndarray | None, head: list[Candidate],
                        rerank: bool) -> None:
        """Fetch stored vectors for the head only: the dense one (absolute relevance) and any the reranker needs."""
        names = [DENSE] if dense is not None else []
        if rerank and self.reranker is not None:
            names += [n for n in self.reranker.needs_vectors if n not in names]
        vectors = self.store.fetch_vectors(IndexRef(q.tenant, version), [c.hit.id for c in head], names)
        for c in head:
            c.hit.vectors = vectors.get(c.hit.id, {})
            vec = c.hit.vectors.get(DENSE)
            if dense is not None and vec is not None:
                c.dense_cos = float(vec @ dense / (np.linalg.norm(vec) * np.linalg.norm(dense) + 1e-12))

    def _rerank(self, q: RetrievalQuery, cands: list[Candidate], reasons: list[Reason]) -> list[Candidate]:
        cfg = self.rerank_cfg
        depth = cfg.depth
        if cfg.adaptive:
            decision = decide_depth(cands[:depth], depth, AdaptivePolicy(cfg.adaptive_margin, cfg.confident_depth))
            if decision.confident:
                reasons.append(Reason.RERANK_SKIPPED_CONFIDENT if decision.depth == 0 else Reason.RERANK_SHORTENED_CONFIDENT)
                if decision.depth == 0:
                    return cands
                depth = decision.depth
        head, tail = cands[:depth], cands[depth:]
        deadline = Deadline.after_ms(min(cfg.budget_ms, q.deadline.remaining_ms()) if q.deadline else cfg.budget_ms)
        try:
            scores = self.reranker.score(q.text, head, max_length=cfg.max_length, deadline=deadline)  # type: ignore[union-attr]
            deadline.check("reranker")
        except RerankTimeout:
            reasons.append(Reason.RERANKER_TIMEOUT)
            return cands
        except Exception as exc:
            log.warning("reranker failed, keeping fused order: %s", exc)
            reasons.append(Reason.RERANKER_FAILED)
            return cands
        for c, s in zip(head, scores):
            c.rerank_score = s
        head.sort(key=lambda c: c.rerank_score, reverse=True)  # type: ignore[arg-type, return-value]
        return head + tail

    def _confidence(self, c: Candidate, q_terms: set[str]) -> float:
        if c.rerank_score is not None and self.reranker is not None:
            calibrated = self.reranker.confidence(c.rerank_score)
            if calibrated is not None:
                return calibrated
        if c.dense_cos is not None:
            return self._dense_calibration(c.dense_cos)
        # BM25 only (by request or because the embedder failed): lexical overlap is all we know.
        if q_terms:
            c.term_coverage = len(q_terms & set(tokenize(c.hit.text))) / len(q_terms)
        return ramp(c.term_coverage or 0.0, 0.2, 1.0)

    # --- entry point ---------------------------------------------------------------
    def retrieve(self, q: RetrievalQuery, on_stage: StageHook | None = None, span: StageSpan | None = None) -> RetrievalResult:
        """Run the pipeline. Raises ``StoreUnavailable`` when the store is down (the API maps it to 503).

        ``q.deadline`` is checked between stages: past it before the search there is nothing to
        return (``DeadlineExceeded``); past it before reranking the fused order goes out, degraded.
        """
        timer = _Timer(span)
        reasons: list[Reason] = []
        t_start = time.perf_counter()
        version = q.version or self.store.live_version(q.tenant)
        if version is None:
            return self._finish(q, [], [Reason.EMPTY_INDEX], None, timer, None, t_start, on_stage)
        _check_deadline(q, "embed")
        with timer.stage("embed"):
            mode, dense = self._encode(q, reasons)
        use_rerank = bool(self.reranker and q.rerank)
        limit = max(q.top_k, self.rerank_cfg.depth if use_rerank else 0)
        if q.unique_documents:
            limit *= 3   # chunks of the same document collapse; fetch enough to fill top_k documents
        _check_deadline(q, "search")
        with timer.stage("search"):
            try:
                cands = self._search(q, mode, dense, limit, version)
            except IndexNotFound:
                return self._finish(q, [], [Reason.EMPTY_INDEX], None, timer, None, t_start, on_stage)
            self._attach_vectors(q, version, dense, cands[: max(q.top_k, self.rerank_cfg.depth if use_rerank else 0)],
                                 use_rerank)
        reranker_name = None
        if use_rerank and cands and q.deadline is not None and q.deadline.remaining_ms() <= 0:
            reasons.append(Reason.DEADLINE_EXCEEDED)
        elif use_rerank and cands:
            with timer.stage("rerank"):
                cands = self._rerank(q, cands, reasons)
            reranker_name = self.reranker.name if not {Reason.RERANKER_FAILED, Reason.RERANKER_TIMEOUT} & set(reasons) else None  # type: ignore[union-attr]
        return self._finish(q, cands, reasons, reranker_name, timer, version, t_start, on_stage)

    def _finish(self, q: RetrievalQuery, cands: list[Candidate], reasons: list[Reason], reranker: str | None,
                timer: _Timer, version: int | None, t_start: float, on_stage: StageHook | None) -> RetrievalResult:
        with timer.stage("guard"):
            top = cands[: q.top_k]
            q_terms = set(tokenize(q.text)) if any(c.dense_cos is None for c in top) else set()
            for c in top:
                c.confidence = self._confidence(c, q_terms)
            decision = decide(top, q.policy, reasons)
        timer.ms["total"] = (time.perf_counter() - t_start) * 1000.0
        if on_stage:
            for name, ms in timer.ms.items():
                on_stage(name, ms)
        return RetrievalResult(decision.status, decision.reasons, decision.confidence, decision.kept,
                               reranker, version, timer.ms)


def _check_deadline(q: RetrievalQuery, stage: str) -> None:
    if q.deadline is not None and q.deadline.remaining_ms() <= 0:
        raise DeadlineExceeded(f"request deadline passed before {stage}")


def _drop_superseded(hits: list[Any]) -> list[Any]:
    """While a changed document is being replaced, old and new chunks may coexist for a moment.

    Writers add the new version before deleting the old one (so a document is
    never missing); readers drop chunks of a document whose newer version is
    also in the result, so the two are never mixed in one answer.
    """
    newest: dict[str, int] = {}
    for h in hits:
        v = int(h.payload.get("doc_version", 0))
        newest[h.document_id] = max(newest.get(h.document_id, v), v)
    return [h for h in hits if int(h.payload.get("doc_version", 0)) == newest[h.document_id]]
