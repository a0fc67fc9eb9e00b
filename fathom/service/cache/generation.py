"""Per-tenant write generations: how a write invalidates cached answers by construction.

Every cache key contains the tenant's current generation. A write path bumps
it *after* its data is visible to searches, so any answer computed before the
write is stored under the old generation and is never read again (it expires
with its TTL). No purge, no scan, no race between a purge and a late writer.

Write paths must call :meth:`Generations.bump` (``rt.generations.bump(tenant)``):

* ingest and document deletes: done here, by :class:`InvalidatingIngest`
  (``rt.ingest`` is one), so the CLI, the API and reindex jobs get it for free;
* index activation (reindex swap, rollback): the code that calls
  ``store.activate`` bumps. A new live version already changes the key, but a
  rollback returns to a version whose old answers may still be cached.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any, Protocol

from fathom.ingest.ingest_pipeline import IngestItem, IngestPipeline, IngestReport, ProgressHook
from fathom.retrieval.tenancy import Tenant
from fathom.service.redis_link import RedisBypassed, RedisLink

log = logging.getLogger(__name__)


class Generations(Protocol):
    def current(self, tenant: Tenant) -> int:
        """The generation answers are cached under now; raises ``RedisBypassed`` when it cannot be known."""
        ...

    def bump(self, tenant: Tenant) -> None:
        """Call after every write that changes what the tenant's searches return. Never raises."""
        ...


class MemoryGenerations:
    """In-process counters (no Redis configured: the cache is in-process too)."""

    def __init__(self) -> None:
        self._gen: dict[str, int] = {}
        self._lock = threading.Lock()

    def current(self, tenant: Tenant) -> int:
        return self._gen.get(tenant.id, 0)

    def bump(self, tenant: Tenant) -> None:
        with self._lock:
            self._gen[tenant.id] = self._gen.get(tenant.id, 0) + 1


class RedisGenerations:
    """Counters in Redis (``INCR``), shared by every process that serves or writes the tenant.

    A bump that fails (Redis down) is remembered and replayed before this
    process reads any generation again; until it is replayed the cache is
    bypassed, so answers cached before the write cannot come back when Redis
    does. (Another process's reads are protected only by the TTL in that case.)
    """

    def __init__(self, link: RedisLink, prefix: str):
        self.link = link
        self.prefix = prefix
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    def key(self, tenant_id: str) -> str:
        return f"{self.prefix}:gen:{{{tenant_id}}}"

    def current(self, tenant: Tenant) -> int:
        if self._pending:
            self._replay()
        raw = self.link.run("generation", lambda r: r.get(self.key(tenant.id)))
        return int(raw or 0)

    def bump(self, tenant: Tenant) -> None:
        try:
            self.link.run("generation_bump", lambda r: r.incr(self.key(tenant.id)))
        except RedisBypassed:
            with self._lock:
                self._pending.add(tenant.id)
            log.warning("cache generation bump for tenant %s deferred until redis is back", tenant.id)

    def _replay(self) -> None:
        with self._lock:   # held across the call so a failing bump cannot slip between replay and clear
            if not self._pending:
                return

            def incr_all(r: Any) -> None:
                pipe = r.pipeline(transaction=False)
                for tenant_id in sorted(self._pending):
                    pipe.incr(self.key(tenant_id))
                pipe.execute()

            self.link.run("generation_bump", incr_all)
            self._pending.clear()


class InvalidatingIngest(IngestPipeline):
    """The ingest pipeline, bumping the tenant's generation after each written batch and each delete.

    It adopts an already built pipeline (``fathom.ingest.wiring.build_ingest`` stays
    the one place that assembles one) rather than re-listing its constructor.
    """

    def __init__(self, pipeline: IngestPipeline, generations: Generations):
        self.__dict__.update(pipeline.__dict__)
        self.generations = generations

    def ingest(self, tenant: Tenant, items: Iterable[IngestItem], *, total: int = -1,
               progress: ProgressHook | None = None, target_version: int | None = None,
               report: IngestReport | None = None) -> IngestReport:
        def batch_done(done: int, of: int) -> None:
            self.generations.bump(tenant)
            if progress:
                progress(done, of)

        try:
            return super().ingest(tenant, items, total=total, progress=batch_done, target_version=target_version,
                                  report=report)
        except BaseException:
            self.generations.bump(tenant)   # the failing batch may be partly written
            raise

    def delete(self, tenant: Tenant, document_id: str) -> bool:
        try:
            return super().delete(tenant, document_id)
        finally:
            self.generations.bump(tenant)
