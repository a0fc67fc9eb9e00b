"""The job queue: a Redis stream with a consumer group, or an in-process queue without Redis.

Why Redis Streams rather than a task library (RQ, Celery, Dramatiq): jobs
must be able to run in a *thread* of the API process, because the embedded
store can be written by the process that owns it only. RQ's workers fork a
work horse per job and install signal handlers (main thread only), and the
others bring their own worker processes too. A consumer group gives what is
needed with redis-py alone: any number of consumers (the API's thread or
``fathom worker`` processes), at-least-once delivery (an entry stays pending
until acknowledged), and recovery of a dead consumer's entry with
``XAUTOCLAIM`` once it has been idle past the heartbeat timeout. A consumer
that is alive keeps its entry fresh with ``XCLAIM ... JUSTID`` on every
heartbeat, so a long job is never taken over.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import Any, Protocol

from redis.exceptions import ResponseError

from fathom.service.jobs.redis_conn import JobsRedis


@dataclass(frozen=True, slots=True)
class Delivery:
    job_id: str
    entry_id: str = ""        # the stream entry (Redis); empty in memory


class JobQueue(Protocol):
    def put(self, job_id: str) -> None: ...
    def take(self, timeout_s: float) -> Delivery | None: ...
    def ack(self, delivery: Delivery) -> None: ...
    def touch(self, delivery: Delivery) -> None:
        """Tell the queue the delivery is still being worked on (keeps it from being reclaimed)."""
        ...


class MemoryJobQueue:
    """Process-local FIFO: the queue and its only consumer live in the API process."""

    def __init__(self) -> None:
        self._q: queue.Queue[str] = queue.Queue()

    def put(self, job_id: str) -> None:
        self._q.put(job_id)

    def take(self, timeout_s: float) -> Delivery | None:
        try:
            return Delivery(self._q.get(timeout=timeout_s))
        except queue.Empty:
            return None

    def ack(self, delivery: Delivery) -> None:
        """Nothing to do: an in-process delivery cannot outlive the process that would redeliver it."""

    def touch(self, delivery: Delivery) -> None:
        """Nothing to do (see :meth:`ack`)."""


class RedisStreamQueue:
    GROUP = "fathom-jobs"

    def __init__(self, conn: JobsRedis, consumer: str, reclaim_idle_s: float):
        self.conn = conn
        self.consumer = consumer
        self.stream = conn.key("jobs", "stream")
        self._reclaim_idle_ms = int(reclaim_idle_s * 1000)

    def put(self, job_id: str) -> None:
        self.conn.call(lambda r: r.xadd(self.stream, {"job": job_id}, maxlen=10_000, approximate=True))

    def _ensure_group(self, r: Any) -> None:
        """Create the group (and stream); also after a Redis restart that lost them. Id 0: keep existing entries."""
        try:
            r.xgroup_create(self.stream, self.GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def take(self, timeout_s: float) -> Delivery | None:
        def op(r: Any) -> Delivery | None:
            try:
                return self._reclaim(r) or self._read(r, timeout_s)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._ensure_group(r)
                return None
        return self.conn.call(op)

    def _reclaim(self, r: Any) -> Delivery | None:
        _, entries, _ = r.xautoclaim(self.stream, self.GROUP, self.consumer, self._reclaim_idle_ms,
                                     start_id="0-0", count=1)
        for entry_id, data in entries:
            return Delivery(data["job"], entry_id)
        return None

    def _read(self, r: Any, timeout_s: float) -> Delivery | None:
        res = r.xreadgroup(self.GROUP, self.consumer, {self.stream: ">"}, count=1, block=int(timeout_s * 1000))
        for _, entries in res or []:
            for entry_id, data in entries:
                return Delivery(data["job"], entry_id)
        return None

    def ack(self, delivery: Delivery) -> None:
        def op(r: Any) -> None:
            pipe = r.pipeline()
            pipe.xack(self.stream, self.GROUP, delivery.entry_id)
            pipe.xdel(self.stream, delivery.entry_id)
            pipe.execute()
        self.conn.call(op)

    def touch(self, delivery: Delivery) -> None:
        self.conn.call(lambda r: r.xclaim(self.stream, self.GROUP, self.consumer, 0, [delivery.entry_id], justid=True))
