"""The consumer: takes jobs off the queue and runs them, one at a time, with a heartbeat.

It runs as a background thread, in the API process (the embedded store's
owner) or in ``fathom worker``. While a job runs, a heartbeat thread records
that it is alive, refreshes the tenant lock, keeps the queue entry claimed
and picks up cancel requests. A job whose heartbeat stops (its process was
killed) is found by any consumer, marked failed and its half-built version
dropped: the live version was never touched, since it changes only at the
swap, the job's last step.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from fathom.retrieval.store.contract import IndexRef
from fathom.retrieval.tenancy import Tenant
from fathom.service.core.config import JobSettings
from fathom.service.jobs.job_records import JobStore
from fathom.service.jobs.locks import TenantLocks
from fathom.service.jobs.model import (
    MAX_DOCUMENT_ERRORS,
    JobCancelled,
    JobFailed,
    JobRecord,
    JobStatus,
    JobsUnavailable,
)
from fathom.service.jobs.queue import Delivery, JobQueue
from fathom.service.jobs.services import JobServices
from fathom.service.jobs.versions import sweep_orphans

log = logging.getLogger(__name__)


class Coordination(Protocol):
    """The parts of the job system a consumer coordinates through (``JobSystem`` has them)."""

    settings: JobSettings
    store: JobStore
    queue: JobQueue
    locks: TenantLocks
    worker: str


def worker_id() -> str:
    """host:pid:random, so a record names the process that ran it."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class JobContext:
    """What a running job sees: its record, progress reporting, and the checkpoint that stops it."""

    def __init__(self, job: JobRecord, system: Coordination, stopping: threading.Event):
        self.job = job
        self._system = system
        self._stopping = stopping
        self._cancel = threading.Event()
        self._lost: str | None = None
        self._counts: dict[str, int] = {}
        self._errors: list[dict[str, Any]] = []

    # --- reporting ---------------------------------------------------------------
    def report(self, **fields: Any) -> None:
        """Update the record: ``phase``, ``progress``, ``target_version``..."""
        self._system.store.update(self.job.id, **fields)

    def progress(self, phase: str, done: int, total: int) -> None:
        self.report(phase=phase, progress={"done": done, "total": total})

    def count(self, **deltas: int) -> None:
        for k, v in deltas.items():
            self._counts[k] = self._counts.get(k, 0) + v
        self.report(counts=self._counts)

    def document_error(self, document_id: str, code: str, message: str) -> None:
        self.count(document_errors=1)
        if len(self._errors) < MAX_DOCUMENT_ERRORS:
            self._errors.append({"document_id": document_id, "code": code, "message": message})
            self.report(errors=self._errors)

    # --- stopping ------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Raise if the job must stop: cancelled, lost its lock or Redis, or the consumer is shutting down."""
        if self._lost:
            raise JobFailed("coordination_lost", self._lost)
        if self._cancel.is_set():
            raise JobCancelled()
        if self._stopping.is_set():
            raise JobFailed("worker_stopped", "the worker shut down during the job; submit it again")

    def confirm_lock(self) -> None:
        """Check, synchronously, that this job still holds its tenant (the last thing before the swap)."""
        if not self._system.locks.refresh(self.job.tenant, self.job.id, self._system.settings.lock_ttl_s):
            raise JobFailed("lock_lost", "another job took this tenant's reindex lock; this one must not swap")

    def lose(self, reason: str) -> None:
        self._lost = self._lost or reason

    def cancel(self) -> None:
        self._cancel.set()


class _Heartbeat:
    def __init__(self, ctx: JobContext, system: Coordination, delivery: Delivery):
        self.ctx, self.system, self.delivery = ctx, system, delivery
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fathom-job-heartbeat-{ctx.job.id[:8]}", daemon=True)

    def __enter__(self) -> "_Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        job, s = self.ctx.job, self.system.settings
        while not self._done.wait(s.heartbeat_s):
            try:
                self.system.store.update(job.id, heartbeat_at=time.time())
                if not self.system.locks.refresh(job.tenant, job.id, s.lock_ttl_s):
                    self.ctx.lose("another job took this tenant's reindex lock")
                current = self.system.store.get(job.id)
                if current is not None and current.status is not JobStatus.RUNNING:
                    self.ctx.lose(f"the job was marked {current.status} meanwhile (its heartbeats were late)")
                if current is not None and current.cancel_requested:
                    self.ctx.cancel()
                self.system.queue.touch(self.delivery)
            except JobsUnavailable as exc:
                # Without Redis this job can neither prove it holds the tenant nor report: it stops before the swap.
                self.ctx.lose(str(exc))
            except Exception as exc:
                log.exception("job %s: heartbeat failed", job.id)
                self.ctx.lose(f"heartbeat failed: {type(exc).__name__}: {exc}")


# A job kind's implementation: runs one job with what jobs may use, returns the job's result record.
Handler = Callable[[JobServices, JobContext], dict[str, Any]]


class JobRunner:
    def __init__(self, services: JobServices, system: Coordination, handlers: dict[str, Handler]):
        self.services = services
        self.system = system
        self.handlers = handlers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fathom-jobs", daemon=True)
        self._last_recovery = 0.0
        self._swept = False
        self.busy: str | None = None    # id of the job running now

    def start(self) -> None:
        """Sweep before the consumer thread starts, so a job submitted right after start never meets the sweep's lock."""
        try:
            self._sweep_once()
        except Exception as exc:     # Redis or the store is down: the loop sweeps once they are back
            log.warning("job consumer: start-up sweep deferred: %s", exc)
        self._thread.start()

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop taking jobs; a running job stops at its next checkpoint and cleans up."""
        self._stop.set()
        self._thread.join(timeout=timeout_s)

    # --- loop ----------------------------------------------------------------------
    def _loop(self) -> None:
        """Never exits on an error: an outage (Redis, the store) only pauses the consumer, with backoff."""
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._maybe_recover()
                delivery = self.system.queue.take(timeout_s=1.0)
                if delivery is not None:
                    self._handle(delivery)
                backoff = 0.5
            except JobsUnavailable as exc:
                log.warning("job consumer: %s; retrying in %.1fs", exc, backoff)
            except Exception:
                log.exception("job consumer: unexpected error; retrying in %.1fs", backoff)
            else:
                continue
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _handle(self, delivery: Delivery) -> None:
        job = self.system.store.get(delivery.job_id)
        if job is not None and job.status is JobStatus.QUEUED:
            self._run(job, delivery)
        elif job is not None and job.status is JobStatus.RUNNING:
            if not self._is_dead(job):
                return     # its consumer is alive (just slow to touch the entry) and will acknowledge it
            self.recover(job)
        self.system.queue.ack(delivery)

    def _is_dead(self, job: JobRecord) -> bool:
        return job.heartbeat_age() > self.system.settings.heartbeat_timeout_s

    def _run(self, job: JobRecord, delivery: Delivery) -> None:
        now = time.time()
        if not self.system.store.transition(job.id, [JobStatus.QUEUED], JobStatus.RUNNING, started_at=now,
                                            heartbeat_at=now, worker=self.system.worker):
            return   # cancelled while queued
        if not self.system.locks.refresh(job.tenant, job.id, self.system.settings.lock_ttl_s):
            self._finish(job, JobStatus.FAILED, error={
                "code": "reindex_in_progress", "message": "another job holds this tenant; submit again when it is done"})
            return
        ctx = JobContext(job, self.system, self._stop)
        self.busy = job.id
        try:
            with _Heartbeat(ctx, self.system, delivery):
                result = self.handlers[job.kind](self.services, ctx)
            self._finish(job, JobStatus.SUCCEEDED, result=result)
        except JobCancelled:
            self._finish(job, JobStatus.CANCELLED, error={
                "code": "cancelled", "message": "cancelled by an admin; the live version is unchanged"})
        except JobFailed as exc:
            self._finish(job, JobStatus.FAILED, error={"code": exc.code, "message": exc.message, "details": exc.details})
        except JobsUnavailable as exc:
            log.error("job %s stopped, Redis unavailable: %s", job.id, exc)
            self._finish(job, JobStatus.FAILED, error={"code": "coordination_lost", "message": str(exc)})
        except Exception as exc:
            log.exception("job %s failed", job.id)
            self._finish(job, JobStatus.FAILED, error={"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"})
        finally:
            self.busy = None
            try:
                self.system.locks.release(job.tenant, job.id)
            except JobsUnavailable as exc:
                log.warning("job %s: could not release the tenant lock (it expires by itself): %s", job.id, exc)

    def _finish(self, job: JobRecord, status: JobStatus, **fields: Any) -> None:
        try:
            self.system.store.transition(job.id, [JobStatus.RUNNING], status, finished_at=time.time(), **fields)
        except JobsUnavailable as exc:
            log.error("job %s ended %s but its record could not be written: %s", job.id, status, exc)

    # --- dead workers ------------------------------------------------------------------
    def _maybe_recover(self) -> None:
        """Fail jobs whose worker died; once, at start, drop versions half-built by a process that died."""
        interval = self.system.settings.heartbeat_timeout_s / 2
        if time.monotonic() - self._last_recovery < interval:
            return
        self._sweep_once()
        self._last_recovery = time.monotonic()
        for job in self.system.store.running():
            if job.id != self.busy and self._is_dead(job):
                self.recover(job)

    def _sweep_once(self) -> None:
        if not self._swept:
            dropped = sweep_orphans(self.services, self.system.locks)
            if dropped:
                log.warning("dropped half-built index versions left by a process that died: %s", dropped)
            self._swept = True

    def recover(self, job: JobRecord) -> None:
        """A job whose worker died: fail it (or, if it died just after its swap, record the success)."""
        tenant = Tenant(job.tenant)
        live = self.services.store.live_version(tenant)
        if job.target_version is not None and job.target_version == live:
            self.system.store.transition(job.id, [JobStatus.RUNNING], JobStatus.SUCCEEDED, finished_at=time.time(),
                                         result={"new_version": live, "recovered": True})
            return
        dropped = None
        if job.target_version is not None and job.target_version in self.services.store.versions(tenant):
            self.services.store.drop_index(IndexRef(tenant, job.target_version))
            dropped = job.target_version
        age = job.heartbeat_age()
        failed = self.system.store.transition(job.id, [JobStatus.RUNNING], JobStatus.FAILED, finished_at=time.time(), error={
            "code": "heartbeat_expired",
            "message": f"the worker {job.worker} stopped sending heartbeats {age:.0f}s ago (killed or crashed); "
                       f"the live version {live} was not changed and the half-built version was dropped",
            "details": {"worker": job.worker, "live_version": live, "dropped_version": dropped}})
        if failed:
            log.warning("job %s: worker %s is gone; marked failed, dropped version %s", job.id, job.worker, dropped)
        self.system.locks.release(job.tenant, job.id)
