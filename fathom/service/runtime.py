"""Everything a Fathom process holds for its lifetime: settings, store, model sessions, pipelines.

Built once (API lifespan, CLI command, worker start) and shared by all
requests, so no request ever pays for a model load or a client construction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from fathom.ingest.wiring import build_ingest
from fathom.ingest.ingest_pipeline import IngestPipeline
from fathom.ingest.registry import Registry
from fathom.ingest.stored_text import RegistryDocuments
from fathom.ingest.tenant_files import registry_calibrations
from fathom.retrieval.components import Models, build_pipeline, load_models, open_store
from fathom.retrieval.context import ContextAssembler, DocumentCache, load_tokenizer
from fathom.retrieval.models.embed_cache import EmbeddingCache
from fathom.retrieval.query_pipeline import RetrievalPipeline
from fathom.service.core.config import Settings
from fathom.retrieval.store.contract import VectorStore
from fathom.service.auth import KeyStore
from fathom.service.cache.answers import AnswerCache
from fathom.service.cache.generation import Generations, InvalidatingIngest, MemoryGenerations
from fathom.service.jobs.reindex import KIND as REINDEX
from fathom.service.jobs.reindex import run_reindex
from fathom.service.jobs.services import JobServices
from fathom.service.jobs.system import JobSystem
from fathom.service.limits import RateLimiter
from fathom.service.observability.metrics import Metrics
from fathom.service.observability.tracing import Tracing
from fathom.service.redis_link import RedisLink
from fathom.service.serving import build_serving
from fathom.service.tenants import TenantDirectory

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    store: VectorStore
    models: Models
    pipeline: RetrievalPipeline
    registry: Registry
    ingest: IngestPipeline
    keys: KeyStore
    tenants: TenantDirectory
    embedding_cache: EmbeddingCache | None = None     # query/chunk embeddings by text hash (ingest reuses them)
    # Request-path machinery (fathom.service.serving). Write paths call generations.bump(tenant) after each write.
    generations: Generations = field(default_factory=MemoryGenerations)
    answer_cache: AnswerCache | None = None           # retrieval answers (fathom.service.cache.answers)
    limiter: RateLimiter | None = None
    metrics: Metrics = field(default_factory=Metrics)
    tracing: Tracing = field(default_factory=Tracing)
    redis: RedisLink | None = None
    # Background jobs (reindex): queue, records and tenant locks, in Redis or in memory; see fathom.service.jobs.
    jobs: JobSystem | None = None
    # Context assembly for /v1/retrieve (max_context_tokens): the configured tokenizer, documents from the registry.
    context: ContextAssembler | None = None

    @classmethod
    def open(cls, settings: Settings) -> "Runtime":
        settings.state_path.mkdir(parents=True, exist_ok=True)
        store = open_store(settings)
        models = load_models(settings)
        registry = Registry(settings.registry)
        embedding_cache = EmbeddingCache(settings.state_path / "embeddings.sqlite")
        serving = build_serving(settings)
        jobs = JobSystem.open(settings)
        jobs.register(REINDEX, run_reindex)      # the job kinds this process runs (one more kind: one more line)
        rt = cls(
            settings=settings, store=store, models=models,
            pipeline=build_pipeline(settings, store, models,
                                    calibrations=registry_calibrations(registry, settings.judge_calibration_dir)),
            registry=registry,
            ingest=InvalidatingIngest(build_ingest(settings, store, registry, models, cache=embedding_cache), serving.generations),
            keys=KeyStore(Path(settings.service.api_keys_file) if settings.service.api_keys_file else None,
                          settings.service.api_keys),
            tenants=TenantDirectory(settings),
            embedding_cache=embedding_cache,
            generations=serving.generations, answer_cache=serving.answer_cache, limiter=serving.limiter,
            metrics=serving.metrics, tracing=serving.tracing, redis=serving.redis,
            jobs=jobs,
            context=ContextAssembler(load_tokenizer(settings.context.tokenizer), RegistryDocuments(registry),
                                     DocumentCache(settings.context.document_cache_chars)
                                     if settings.context.document_cache_chars else None,
                                     count_cache_chars=settings.context.count_cache_chars),
        )
        if settings.store.backend == "edge":
            rt.recover_interrupted_writes()
        return rt

    def job_services(self) -> JobServices:
        """What background jobs may use of this process (fathom.service.jobs never sees the runtime itself)."""
        return JobServices(self.settings, self.store, self.registry, self.ingest, self.pipeline, self.tenants,
                           self.generations)

    def recover_interrupted_writes(self) -> None:
        """Undo the unrecorded part of ingest batches a killed process left in the embedded store.

        Only while no other process owns the store (its writes in flight are
        not interrupted); the API server, ``fathom ingest`` and ``fathom demo``
        open their runtime before anything else claims it, so they recover.
        """
        from fathom.retrieval.tenancy import Tenant
        from fathom.service.jobs.ownership import StoreOwned, StoreOwnership

        try:
            claim = StoreOwnership.claim(self.settings.state_path)
        except StoreOwned:
            return
        try:
            undone = self.ingest.recover_interrupted_writes()
        except Exception:   # e.g. a shard held by a process that does not claim the store: retried at the next start
            log.exception("could not undo interrupted ingest writes; the next process to own the store will retry")
            return
        finally:
            claim.release()
        for tenant in sorted({p.tenant for p in undone}):
            self.generations.bump(Tenant(tenant))    # answers cached before the crash may hold those chunks
        if undone:
            log.warning("removed the chunks of %d document version(s) an interrupted ingest wrote but never recorded: %s",
                        len(undone), ", ".join(f"{p.tenant}/{p.document_id}@v{p.doc_version}" for p in undone[:20]))

    def close(self) -> None:
        if self.jobs:
            self.jobs.close()   # first: a running job stops before the store it writes to closes
        self.store.close()
        self.registry.close()
        if self.embedding_cache:
            self.embedding_cache.close()
        if self.redis:
            self.redis.close()
        self.tracing.shutdown()
