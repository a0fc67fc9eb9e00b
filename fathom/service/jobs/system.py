"""The job system of one process: records, queue and tenant locks (Redis or memory), and its consumer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fathom.service.core.config import JobSettings, Settings
from fathom.service.jobs.locks import MemoryTenantLocks, RedisTenantLocks, TenantLocks
from fathom.service.jobs.model import TERMINAL, JobRecord, JobStatus
from fathom.service.jobs.ownership import StoreOwnership
from fathom.service.jobs.queue import JobQueue, MemoryJobQueue, RedisStreamQueue
from fathom.service.jobs.redis_conn import JobsRedis
from fathom.service.jobs.runner import Handler, JobRunner, worker_id
from fathom.service.jobs.services import JobServices
from fathom.service.jobs.job_records import JobStore, MemoryJobStore, RedisJobStore
from fathom.service.jobs.versions import SWEEP_OWNER, TenantBusy

_SWEEP_WAIT_S = 10.0     # a sweep drops at most a few half-built versions of one tenant


class JobNotFound(LookupError):
    pass


class JobFinished(RuntimeError):
    def __init__(self, job: JobRecord):
        super().__init__(f"job {job.id} already ended ({job.status})")
        self.job = job


@dataclass
class JobSystem:
    settings: JobSettings
    store: JobStore
    queue: JobQueue
    locks: TenantLocks
    worker: str
    backend: str                       # "redis" | "memory"
    consume_in_api: bool
    redis: JobsRedis | None = None
    runner: JobRunner | None = None
    ownership: StoreOwnership | None = None
    handlers: dict[str, Handler] = field(default_factory=dict)   # job kind -> implementation (register())

    @classmethod
    def open(cls, settings: Settings) -> "JobSystem":
        s, worker = settings.jobs, worker_id()
        if not settings.redis_url:
            return cls(s, MemoryJobStore(s.retention_s), MemoryJobQueue(), MemoryTenantLocks(), worker, "memory",
                       consume_in_api=True)
        conn = JobsRedis(settings.redis_url, s.key_prefix)
        # The embedded store can only be written by its owner, the API process: it must consume.
        in_api = settings.store.backend == "edge" or bool(s.consumer_in_api)
        return cls(s, RedisJobStore(conn, s.retention_s), RedisStreamQueue(conn, worker, s.heartbeat_timeout_s),
                   RedisTenantLocks(conn), worker, "redis", consume_in_api=in_api, redis=conn)

    def register(self, kind: str, handler: Handler) -> None:
        """Run jobs of ``kind`` with ``handler`` (the runtime registers reindex; a new kind is one more call)."""
        self.handlers[kind] = handler

    # --- submitting and inspecting --------------------------------------------------------
    def submit(self, kind: str, tenant: str, options: dict[str, Any]) -> JobRecord:
        """Queue a job; the tenant is reserved from now on (one reindex per tenant at a time).

        An orphan sweep (a worker starting up) holds the tenant only for a moment: wait it out rather than
        answer "busy" with a holder that is not a job the caller could look up.
        """
        job = JobRecord.new(kind, tenant, options)
        deadline = time.monotonic() + _SWEEP_WAIT_S
        while not self.locks.acquire(tenant, job.id, self.settings.queued_lock_ttl_s):
            holder = self.locks.holder(tenant)
            if holder is not None and (not holder.startswith(SWEEP_OWNER) or time.monotonic() > deadline):
                raise TenantBusy(holder)
            time.sleep(0.05)
        try:
            self.store.create(job)
            self.queue.put(job.id)
        except BaseException:
            self.locks.release(tenant, job.id)
            raise
        return job

    def get(self, job_id: str, tenant: str) -> JobRecord:
        """The job, if it belongs to ``tenant`` (another tenant's job is reported as not found)."""
        job = self.store.get(job_id)
        if job is None or job.tenant != tenant:
            raise JobNotFound(job_id)
        return job

    def cancel(self, job_id: str, tenant: str) -> JobRecord:
        """Cancel a queued job now, or ask a running one to stop at its next checkpoint."""
        job = self.get(job_id, tenant)
        if self.store.transition(job_id, [JobStatus.QUEUED], JobStatus.CANCELLED, finished_at=time.time(), error={
                "code": "cancelled", "message": "cancelled by an admin before it started"}):
            self.locks.release(tenant, job_id)
        else:
            job = self.get(job_id, tenant)
            if job.status in TERMINAL:
                raise JobFinished(job)
            self.store.update(job_id, cancel_requested=True)
        return self.get(job_id, tenant)

    # --- consuming ------------------------------------------------------------------------
    def start_consumer(self, services: JobServices, ownership: StoreOwnership | None = None) -> None:
        """Start the consumer thread; with the edge backend this process must own the store (claimed here)."""
        if services.settings.store.backend == "edge":
            self.ownership = ownership or StoreOwnership.claim(services.settings.state_path)
        self.runner = JobRunner(services, self, dict(self.handlers))
        self.runner.start()

    def stop_consumer(self) -> None:
        if self.runner is not None:
            self.runner.stop()
            self.runner = None
        if self.ownership is not None:
            self.ownership.release()
            self.ownership = None

    def close(self) -> None:
        self.stop_consumer()
        if self.redis is not None:
            self.redis.close()
