"""Reindex: build the tenant's next index version from the registry, gate it, swap it in.

Steps (each reported as the job's ``phase``):

1. ``measure`` - chunk every document the way the new version will, to
   compute BM25's average chunk length over the whole corpus (the live
   version's was frozen from its first batch);
2. ``build`` - create version N+1 beside the live one and write every
   registry document into it (the embedding cache makes unchanged chunks
   free); queries keep hitting version N all along;
3. ``catch_up`` - replay documents written or deleted since the job started
   (the registry's change log), until a pass finds nothing new;
4. ``gate`` - score N and N+1 on the tenant's golden set; refuse the swap if
   recall@10 drops by more than ``jobs.gate_max_recall_drop``;
5. ``swap`` - under the tenant's write lock, a last catch-up and the atomic
   activation. The replaced version is kept for rollback, older ones dropped;
6. ``calibrate`` - refit the relevance judge's tenant calibration on the new
   live version from the same golden set (never fails the job).

Any failure, a cancel, or a lost lock before the swap drops N+1 and leaves N
live. A killed process leaves N+1 half-built but never live; the next
consumer to notice the missing heartbeats drops it (``runner.recover``).
Writes made meanwhile are excluded from the final catch-up and swap by the
tenant's write lock, in every process that shares the registry (the lock is
the registry's: ``Registry.write_lock``). At the swap the registry's chunk
counts move to the new live version (``Registry.swap_chunk_counts``), so
``chunk_count`` always describes the live index.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from typing import Any, Literal, TypeVar

from fathom.ingest.wiring import chunker_spec
from fathom.ingest.indexer import Indexer
from fathom.ingest.document import Element
from fathom.ingest.ingest_pipeline import Chunker, PreparedRebuild, RebuildReport
from fathom.ingest.overlap import overlapped
from fathom.ingest.progress import RateMeter
from fathom.ingest.registry import DocumentRecord
from fathom.retrieval.bm25 import Bm25Params
from fathom.retrieval.judge.fit import CalibrationError, calibrate_tenant
from fathom.retrieval.store.contract import IndexRef
from fathom.retrieval.tenancy import Tenant
from fathom.service.jobs.services import JobServices
from fathom.service.jobs.gate import GoldenQuery, GoldenSetInvalid, GoldenSets, evaluate
from fathom.service.jobs.model import JobFailed
from fathom.service.jobs.runner import JobContext
from fathom.service.jobs.versions import CatchUp, activate, catch_up, prune


log = logging.getLogger(__name__)

KIND = "reindex"
CATCH_UP_PASSES = 3
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ReindexOptions:
    """How to build the new version; each unset option keeps the service's configuration."""

    chunker: Literal["semantic", "fixed", "late"] | None = None
    max_chunk_tokens: int | None = None
    bm25_k1: float | None = None
    bm25_b: float | None = None
    embed_mpnet: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ReindexOptions":
        return cls(**data)

    def check(self, rt: JobServices) -> None:
        """Refuse what this deployment cannot build (raises ValueError with the reason)."""
        limit = rt.ingest.indexer.dense.max_length
        if self.max_chunk_tokens is not None and not 16 <= self.max_chunk_tokens <= limit:
            raise ValueError(f"max_chunk_tokens must be between 16 and {limit} (the embedder's input limit)")
        if self.embed_mpnet and rt.ingest.indexer.rerank is None:
            raise ValueError("embed_mpnet: the mpnet model is not loaded by this deployment "
                             "(FATHOM_INGEST__EMBED_MPNET=false)")


def golden_sets(rt: JobServices) -> GoldenSets:
    return GoldenSets.of(rt.settings, rt.registry, rt.tenants)


def run_reindex(rt: JobServices, ctx: JobContext) -> dict[str, Any]:
    return Reindex(rt, ctx, ReindexOptions.from_json(ctx.job.options)).run()


class Reindex:
    def __init__(self, rt: JobServices, ctx: JobContext, options: ReindexOptions):
        self.rt, self.ctx, self.options = rt, ctx, options
        self.tenant = Tenant(ctx.job.tenant)
        try:
            options.check(rt)
        except ValueError as exc:
            raise JobFailed("invalid_options", str(exc)) from None
        self.chunker: Chunker = rt.ingest.chunker_from_spec(
            chunker_spec(rt.settings, options.chunker, options.max_chunk_tokens))
        base = rt.ingest.bm25
        self.bm25 = Bm25Params(base.k1 if options.bm25_k1 is None else options.bm25_k1,
                               base.b if options.bm25_b is None else options.bm25_b)

    def run(self) -> dict[str, Any]:
        rt, tenant = self.rt, self.tenant
        total = rt.registry.counts(tenant).get("ok", 0)
        if not total:
            raise JobFailed("nothing_to_reindex", f"tenant {tenant} has no ingested documents")
        golden = self._golden()
        live = rt.store.live_version(tenant)
        # The change-log watermark is read before the first registry read: every later write is caught up.
        since = rt.registry.change_seq(tenant)
        target = IndexRef(tenant, max(rt.store.versions(tenant), default=0) + 1)
        self.ctx.report(target_version=target.version)   # recorded first, so a crash recovery knows what to drop
        tally = CatchUp()
        try:
            avgdl = self._measure(total)
            layout = rt.ingest.new_layout(avgdl, chunker=self.chunker, bm25=self.bm25,
                                          with_rerank_vectors=self.options.embed_mpnet)
            rt.registry.forget_version(tenant, target.version)   # counts a dropped build of this number left
            rt.store.create_index(target, layout)
            self._build(target, total)
            self.ctx.progress("optimize", 0, 1)
            rt.store.optimize(target)
            since = self._catch_up(target, since, tally)
            gate = self._gate(golden, live, target)
            self.ctx.progress("swap", 0, 1)
            previous = activate(rt, target, since, tally, before_swap=self._before_swap)
        except BaseException:
            self._discard(target)
            raise
        self.ctx.count(caught_up=tally.rebuilt, removed=tally.removed)
        for document_id in tally.without_chunks:
            self.ctx.document_error(document_id, "no_chunks", "changed during the reindex; this chunking produced "
                                                              "no chunk for it, so it is missing until written again")
        return {"previous_version": previous, "new_version": target.version, "dropped_versions": prune(rt, tenant),
                "gate": gate, "bm25_avgdl": round(avgdl, 3), "chunker": self.chunker.spec.key,
                "bm25": {"k1": self.bm25.k1, "b": self.bm25.b}, "embed_mpnet": bool(layout.rerank_dim),
                "judge_calibration": self._calibrate(golden, target.version)}

    def _golden(self) -> list[GoldenQuery] | None:
        try:
            return golden_sets(self.rt).load(self.tenant)
        except GoldenSetInvalid as exc:
            raise JobFailed("golden_set_invalid", f"the tenant's golden set is invalid: {exc}") from None

    def _measure(self, total: int) -> float:
        """BM25's avgdl for the new version: mean chunk length over every document, chunked as it will be."""
        length, chunks, done = 0.0, 0, 0
        for batch in _batches(self.rt.registry.iter_ok(self.tenant), self.rt.ingest.batch_docs):
            self.ctx.checkpoint()
            docs = [dc for dc, _ in self.rt.ingest.chunk_records(batch, self.chunker) if dc is not None]
            n = sum(len(d.chunks) for d in docs)
            length += Indexer.average_length(docs) * n
            chunks += n
            done += len(batch)
            self.ctx.progress("measure", done, total)
        return length / chunks if chunks else 100.0

    def _build(self, target: IndexRef, total: int) -> None:
        """Rebuild every document into ``target``: batch n is written while batch n + 1 is chunked and encoded."""
        missing: list[str] = []
        meter, done, chunks = RateMeter(total), [0], [0]

        def prepare(batch: list[tuple[DocumentRecord, list[Element]]]) -> PreparedRebuild:
            self.ctx.checkpoint()
            return self.rt.ingest.prepare_rebuild(target, batch)

        def written(batch: list[tuple[DocumentRecord, list[Element]]], report: RebuildReport) -> None:
            done[0] += len(batch)
            chunks[0] += report.chunks
            self.ctx.count(documents=report.documents, chunks=report.chunks,
                           embeddings_computed=report.embeddings_computed)
            for document_id in report.without_chunks:
                self.ctx.document_error(document_id, "no_chunks", "this chunking produced no chunk for the document")
            missing.extend(report.without_chunks)
            self.ctx.report(phase="build", progress=meter.update(done[0], chunks[0]).as_progress())

        # The version is new and each document comes once: nothing to replace in it.
        overlapped(_batches(self.rt.registry.iter_ok(self.tenant), self.rt.ingest.batch_docs), prepare,
                   lambda prepared: self.rt.ingest.write_rebuild(prepared, replace=False), written,
                   enabled=self.rt.ingest.overlap_writes)
        if missing:
            raise JobFailed("documents_without_chunks",
                            f"{len(missing)} document(s) would be missing from the new version; it was not activated",
                            {"document_ids": missing[:20]})

    def _catch_up(self, target: IndexRef, since: int, tally: CatchUp) -> int:
        """Replay concurrent writes; a few passes, each shorter, so the locked final pass has little left."""
        for n in range(CATCH_UP_PASSES):
            self.ctx.progress("catch_up", n, CATCH_UP_PASSES)
            new_since = catch_up(self.rt, target, since, tally, self.ctx.checkpoint)
            if new_since == since:
                break
            since = new_since
        return since

    def _gate(self, golden: list[GoldenQuery] | None, live: int | None, target: IndexRef) -> dict[str, Any] | None:
        if golden is None:
            return None
        self.ctx.progress("gate", 0, len(golden))
        self.ctx.checkpoint()
        result = evaluate(self.rt.pipeline, self.tenant, golden, live=live, candidate=target.version,
                          max_drop=self.rt.settings.jobs.gate_max_recall_drop)
        figures = result.to_json()
        if not result.passed:
            raise JobFailed(
                "gate_refused",
                f"recall@10 on the golden set would drop from {result.baseline_recall:.3f} (v{live}) to "
                f"{result.candidate_recall:.3f} (v{target.version}), by {result.drop:.3f}, more than the allowed "
                f"{result.max_drop:.3f}; v{live} stays live", figures)
        return figures

    def _calibrate(self, golden: list[GoldenQuery] | None, version: int) -> dict[str, Any] | None:
        """Step 6: refit the tenant's judge calibration on the version now live, from the same golden set.

        The judge's features are scores of the index (fused scores, gaps, cosines), so a new chunking moves them
        and a calibration fitted on the old version no longer says what it said. Runs after the swap and never
        fails the job: a fit without enough examples keeps the previous calibration and says why. Cost: two
        queries per golden query (~5.5 s for 150 SciFact queries, ~1 s for 26 CACM ones, ``fathom bench guard
        --calibrate``). Off with ``FATHOM_JUDGE__CALIBRATE_ON_REINDEX=false``. Without a golden set: None, or,
        when the tenant has a calibration, why it was not refitted.
        """
        judge = self.rt.pipeline.judge
        if judge is None or judge.tenants is None or not self.rt.settings.judge.calibrate_on_reindex:
            return None
        if golden is None:
            try:
                kept = judge.tenants.get(self.tenant)
            except Exception:      # an unreadable one: GET /v1/admin/index says so
                kept = None
            return None if kept is None else {
                "fitted": False, "reason": "no golden set to refit from: the calibration fitted on version "
                                           f"{kept.provenance.get('index_version', '?')} is kept; "
                                           "`fathom judge calibrate --golden PATH` refits it"}
        self.ctx.progress("calibrate", 0, len(golden))
        try:
            calibration = calibrate_tenant(self.rt.pipeline, self.tenant, [(g.query, g.expected) for g in golden],
                                           provenance={"golden": "configured", "job": self.ctx.job.id,
                                                       "index_version": version})
        except CalibrationError as exc:
            log.warning("judge calibration of %s after reindex kept the previous one: %s", self.tenant, exc)
            return {"fitted": False, "reason": str(exc)}
        judge.tenants.save(self.tenant, calibration)
        self.rt.generations.bump(self.tenant)     # cached answers carry the old calibration's confidences
        p = calibration.provenance
        return {"fitted": True, "index_version": version, "examples": p["examples"], "not_judged": p["not_judged"],
                "collect_s": p["collect_s"]}

    def _before_swap(self) -> None:
        self.ctx.checkpoint()
        self.ctx.confirm_lock()

    def _discard(self, target: IndexRef) -> None:
        """Drop the half-built version (never the live one); a failure here must not hide the job's own error."""
        store = self.rt.store
        try:
            if store.live_version(self.tenant) != target.version and target.version in store.versions(self.tenant):
                store.drop_index(target)
                self.rt.registry.forget_version(self.tenant, target.version)
        except Exception:
            log.exception("could not drop half-built version %s of %s; the next sweep will",
                          target.version, self.tenant)


def _batches(items: Iterable[T], n: int) -> Iterator[list[T]]:
    it = iter(items)
    while batch := list(islice(it, n)):
        yield batch
