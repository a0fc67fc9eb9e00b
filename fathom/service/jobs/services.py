"""What background jobs may use of the process: a narrow interface instead of the whole ``Runtime``.

The runtime builds one (``Runtime.job_services``) and hands it to the job
system; nothing under ``fathom.service.jobs`` imports the runtime, so the two
never import each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from fathom.ingest.ingest_pipeline import IngestPipeline
from fathom.ingest.registry import Registry
from fathom.retrieval.query_pipeline import RetrievalPipeline
from fathom.retrieval.store.contract import VectorStore
from fathom.service.cache.generation import Generations
from fathom.service.core.config import Settings
from fathom.service.tenants import TenantDirectory


@dataclass(frozen=True, slots=True)
class JobServices:
    settings: Settings
    store: VectorStore               # builds, activates and drops index versions
    registry: Registry               # the documents to rebuild from, and the change log to catch up with
    ingest: IngestPipeline           # chunking, embedding and writes; its tenant write locks guard the swap
    pipeline: RetrievalPipeline      # the reindex gate scores versions with it
    tenants: TenantDirectory         # per-tenant golden sets (the gate)
    generations: Generations         # a swap invalidates the tenant's cached answers
