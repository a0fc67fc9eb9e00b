"""Where job records live: Redis hashes, or process memory without Redis.

Status changes go through :meth:`JobStore.transition`, a compare-and-set, so
an admin cancelling a queued job and a consumer starting it cannot both win.
Other fields are updated one by one (``HSET``), so the runner's progress
writes and an admin's cancel request never overwrite each other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import fields as dc_fields
from typing import Any, Protocol

from fathom.service.jobs.model import TERMINAL, JobRecord, JobStatus, encode_fields
from fathom.service.jobs.redis_conn import JobsRedis


class JobStore(Protocol):
    def create(self, job: JobRecord) -> None: ...
    def get(self, job_id: str) -> JobRecord | None: ...
    def update(self, job_id: str, **fields: Any) -> None: ...
    def transition(self, job_id: str, allowed: Iterable[JobStatus], to: JobStatus, **fields: Any) -> bool:
        """Set ``status=to`` (and ``fields``) only if the current status is one of ``allowed``."""
        ...
    def running(self) -> list[JobRecord]: ...


_FIELD_NAMES = frozenset(f.name for f in dc_fields(JobRecord))


def _check(fields: dict[str, Any]) -> None:
    unknown = set(fields) - _FIELD_NAMES
    if unknown:
        raise KeyError(f"unknown job fields {sorted(unknown)}")


class MemoryJobStore:
    """Records in a dict; finished ones are forgotten after ``retention_s``."""

    def __init__(self, retention_s: float):
        self._jobs: dict[str, JobRecord] = {}
        self._lock = threading.Lock()
        self._retention_s = retention_s

    def create(self, job: JobRecord) -> None:
        now = time.time()
        with self._lock:
            for old in [j for j in self._jobs.values() if j.finished_at and now - j.finished_at > self._retention_s]:
                del self._jobs[old.id]
            self._jobs[job.id] = JobRecord.from_fields(job.to_fields())

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return JobRecord.from_fields(job.to_fields()) if job else None   # a copy: callers never share state

    def update(self, job_id: str, **fields: Any) -> None:
        _check(fields)
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                for k, v in fields.items():
                    setattr(job, k, v)

    def transition(self, job_id: str, allowed: Iterable[JobStatus], to: JobStatus, **fields: Any) -> bool:
        _check(fields)
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status not in set(allowed):
                return False
            job.status = to
            for k, v in fields.items():
                setattr(job, k, v)
            return True

    def running(self) -> list[JobRecord]:
        with self._lock:
            return [JobRecord.from_fields(j.to_fields()) for j in self._jobs.values() if j.status is JobStatus.RUNNING]


# KEYS: job hash, running set. ARGV: n, n JSON-encoded allowed statuses, JSON-encoded new status,
# 1 if the new status is terminal, retention seconds, then field/value pairs.
_TRANSITION = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return 0 end
local n = tonumber(ARGV[1])
local ok = false
for i = 2, n + 1 do
  if ARGV[i] == current then ok = true end
end
if not ok then return 0 end
local to = ARGV[n + 2]
redis.call('HSET', KEYS[1], 'status', to, unpack(ARGV, n + 5))
if ARGV[n + 3] == '1' then
  redis.call('SREM', KEYS[2], KEYS[1])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[n + 4]))
else
  redis.call('SADD', KEYS[2], KEYS[1])
end
return 1
"""


class RedisJobStore:
    """One hash per job (``<prefix>:job:<id>``) and a set of the running ones (for dead-worker recovery)."""

    def __init__(self, conn: JobsRedis, retention_s: int):
        self.conn = conn
        self._retention_s = retention_s
        self._running = conn.key("jobs", "running")
        self._transition = conn.client.register_script(_TRANSITION)

    def _key(self, job_id: str) -> str:
        return self.conn.key("job", job_id)

    def create(self, job: JobRecord) -> None:
        # Queued records expire too: one that outlives its retention was never going to run.
        def op(r: Any) -> None:
            pipe = r.pipeline()
            pipe.hset(self._key(job.id), mapping=job.to_fields())
            pipe.expire(self._key(job.id), self._retention_s)
            pipe.execute()
        self.conn.call(op)

    def get(self, job_id: str) -> JobRecord | None:
        raw = self.conn.call(lambda r: r.hgetall(self._key(job_id)))
        return JobRecord.from_fields(raw) if raw else None

    def update(self, job_id: str, **fields: Any) -> None:
        _check(fields)
        key = self._key(job_id)
        # Only update a record that still exists, so a late heartbeat cannot resurrect an expired one as a stub.
        self.conn.call(lambda r: r.hset(key, mapping=encode_fields(fields)) if r.exists(key) else None)

    def transition(self, job_id: str, allowed: Iterable[JobStatus], to: JobStatus, **fields: Any) -> bool:
        _check(fields)
        statuses = [encode_fields({"s": s})["s"] for s in allowed]
        pairs = [x for kv in encode_fields(fields).items() for x in kv]
        args = [len(statuses), *statuses, encode_fields({"s": to})["s"], "1" if to in TERMINAL else "0",
                self._retention_s, *pairs]
        return bool(self.conn.call(lambda r: self._transition(keys=[self._key(job_id), self._running], args=args)))

    def running(self) -> list[JobRecord]:
        keys = self.conn.call(lambda r: r.smembers(self._running))
        out = []
        for key in keys:
            job = self.get(key.rsplit(":", 1)[-1])
            if job is not None and job.status is JobStatus.RUNNING:
                out.append(job)
        return out
