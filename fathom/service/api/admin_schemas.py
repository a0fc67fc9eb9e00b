"""Pydantic models of the admin API (``/v1/admin``): reindex jobs, index versions, rollback, golden sets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from fathom.service.api.schemas import STRICT_NOTE, request_config
from fathom.service.jobs.model import JobRecord


class ReindexRequest(BaseModel):
    __doc__ = f"Build options for the new version; anything left out keeps the service's configuration. {STRICT_NOTE}"

    model_config = request_config(json_schema_extra={"examples": [
        {}, {"chunker": "fixed", "max_chunk_tokens": 128}, {"bm25_k1": 1.2, "bm25_b": 0.75, "embed_mpnet": False}]})

    chunker: Literal["semantic", "fixed", "late"] | None = Field(
        None, description="semantic (structure + topic breaks), late (the same cuts and vectors from one encoder "
                     "pass per section) or fixed windows")
    max_chunk_tokens: int | None = Field(None, description="Token budget per chunk (16 to the embedder's limit, 256)")
    bm25_k1: float | None = Field(None, ge=0, le=10)
    bm25_b: float | None = Field(None, ge=0, le=1)
    embed_mpnet: bool | None = Field(None, description="Store mpnet vectors for the mpnet reranker")


class JobError(BaseModel):
    code: str = Field(description="Stable code: gate_refused, cancelled, heartbeat_expired, coordination_lost, ...")
    message: str
    details: dict[str, Any] = Field(default_factory=dict, description="Figures behind the error (the gate's recalls...)")


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


class JobOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "5f0c3a9e2b7d4c1e8f6a0b3c2d1e4f5a", "kind": "reindex", "tenant": "acme", "status": "failed",
        "options": {"chunker": "fixed", "max_chunk_tokens": 32}, "created_at": "2025-01-01T10:00:00.000+00:00",
        "started_at": "2025-01-01T10:00:00.120+00:00", "finished_at": "2025-01-01T10:00:41.800+00:00",
        "heartbeat_at": "2025-01-01T10:00:40.900+00:00", "worker": "api-0:4121:a1b2c3", "phase": "gate",
        "progress": {"done": 0, "total": 10}, "counts": {"documents": 190, "chunks": 1211, "embeddings_computed": 1104},
        "errors": [], "target_version": 2, "cancel_requested": False, "result": None,
        "error": {"code": "gate_refused",
                  "message": "recall@10 on the golden set would drop from 0.461 (v1) to 0.408 (v2), by 0.053, "
                             "more than the allowed 0.020; v1 stays live",
                  "details": {"metric": "recall@10", "queries": 10, "baseline_version": 1, "candidate_version": 2,
                              "baseline_recall": 0.461, "candidate_recall": 0.408, "drop": 0.053, "max_drop": 0.02,
                              "passed": False}}}]})

    id: str
    kind: str
    tenant: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    options: dict[str, Any]
    created_at: str
    started_at: str | None
    finished_at: str | None
    heartbeat_at: str | None
    worker: str | None = Field(description="host:pid of the process running (or that ran) the job")
    phase: str | None = Field(description="measure, build, optimize, catch_up, gate, swap, calibrate")
    progress: dict[str, float] = Field(description="done/total of the current phase; the build phase adds "
                                                   "docs_per_s, chunks_per_s and eta_s")
    counts: dict[str, int]
    errors: list[dict[str, Any]] = Field(description="Per-document problems (first 100)")
    target_version: int | None = Field(description="The index version the job builds")
    cancel_requested: bool
    result: dict[str, Any] | None = Field(description="On success: versions before/after, gate figures, build "
                                                       "settings, the judge's recalibration (judge_calibration)")
    error: JobError | None

    @classmethod
    def of(cls, job: JobRecord) -> "JobOut":
        return cls(id=job.id, kind=job.kind, tenant=job.tenant, status=job.status.value, options=job.options,
                   created_at=_iso(job.created_at) or "", started_at=_iso(job.started_at),
                   finished_at=_iso(job.finished_at), heartbeat_at=_iso(job.heartbeat_at), worker=job.worker,
                   phase=job.phase, progress=job.progress, counts=job.counts, errors=job.errors,
                   target_version=job.target_version, cancel_requested=job.cancel_requested, result=job.result,
                   error=JobError(**job.error) if job.error else None)


class VersionOut(BaseModel):
    version: int
    state: Literal["live", "previous", "building"] = Field(
        description="previous: kept for rollback; building: a reindex in progress (or the leftover of one that died, "
                    "dropped at the next start)")
    points: int
    size_bytes: int | None
    layout: dict[str, Any] = Field(description="Models, BM25 parameters and chunking the version was built with")


class JudgeCalibrationOut(BaseModel):
    fitted_at: str | None = Field(None, description="When the tenant's judge calibration was fitted")
    golden: str | None = Field(None, description="What it was fitted on: configured (the tenant's golden set) or a "
                                                 "file given to `fathom judge calibrate --golden`")
    examples: dict[str, int] = Field(default_factory=dict, description="questions, asked, with_evidence_found, "
                                                                       "withheld")
    index_version: int | None = Field(None, description="The index version it was fitted on (by a reindex)")
    current: bool | None = Field(None, description="Fitted on the live version (None: the version is not known, "
                                                   "it was fitted by `fathom judge calibrate`)")
    error: str | None = Field(None, description="The stored calibration cannot be read: answers are degraded "
                                                "(judge_failed) until it is refitted or deleted")


class TenantIndexOut(BaseModel):
    tenant: str
    live_version: int | None
    previous_version: int | None
    versions: list[VersionOut]
    documents: dict[str, int] = Field(description="Registry documents by status")
    judge_calibration: JudgeCalibrationOut | None = Field(None, description="The relevance judge's tenant "
                                                                            "calibration; None: the shipped default")


class IndexOverview(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"tenants": [{
        "tenant": "acme", "live_version": 3, "previous_version": 2, "documents": {"ok": 812, "failed": 3},
        "versions": [{"version": 2, "state": "previous", "points": 5120, "size_bytes": 48234496, "layout": {}},
                     {"version": 3, "state": "live", "points": 5133, "size_bytes": 48410624, "layout": {}}],
        "judge_calibration": {"fitted_at": "2025-01-01T10:00:44+00:00", "golden": "configured",
                              "examples": {"questions": 150, "asked": 300, "with_evidence_found": 131, "withheld": 150},
                              "index_version": 3, "current": True, "error": None}}]}]})

    tenants: list[TenantIndexOut]


class RollbackOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"live_version": 2, "previous_version": 3, "caught_up": {"rebuilt": 4, "removed": 1}}]})

    live_version: int
    previous_version: int | None
    caught_up: dict[str, int] = Field(description="Documents replayed into the restored version: rebuilt, removed")


class GoldenQueryIn(BaseModel):
    __doc__ = f"One golden query. {STRICT_NOTE}"

    model_config = request_config()

    query: str = Field(..., min_length=1, max_length=2000, pattern=r"\S")
    expected: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        ..., min_length=1, description="Ids of the documents a good answer must include")


class GoldenSetIn(BaseModel):
    __doc__ = f"The tenant's golden set. {STRICT_NOTE}"

    model_config = request_config(json_schema_extra={"examples": [{"queries": [
        {"query": "How do honeybees tell each other where flowers are?", "expected": ["honeybees.md"]}]}]})

    queries: list[GoldenQueryIn] = Field(..., min_length=1)


class GoldenSetOut(BaseModel):
    source: Literal["tenants_file", "uploaded"] | None = Field(description="Where the gate reads it from; null: no gate")
    queries: list[GoldenQueryIn]
