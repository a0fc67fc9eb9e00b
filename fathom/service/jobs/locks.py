"""One reindex (or rollback) per tenant at a time: a lock that expires.

The owner is the job id. Submitting a reindex takes the lock for a long
while (the job may wait in the queue); the consumer refreshes it with a short
expiry when the job starts and on every heartbeat, so a worker that dies
frees its tenant within ``jobs.lock_ttl_s``. Refresh and release compare the
owner first, so a job that lost its lock cannot extend or free another's.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from fathom.service.jobs.redis_conn import JobsRedis


class TenantLocks(Protocol):
    def acquire(self, tenant: str, owner: str, ttl_s: float) -> bool:
        """Take the tenant's lock if it is free."""
        ...
    def refresh(self, tenant: str, owner: str, ttl_s: float) -> bool:
        """Extend the lock if ``owner`` holds it, or take it if it is free; False if another owner holds it."""
        ...
    def release(self, tenant: str, owner: str) -> None: ...
    def holder(self, tenant: str) -> str | None: ...


class MemoryTenantLocks:
    def __init__(self) -> None:
        self._held: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _current(self, tenant: str) -> str | None:
        held = self._held.get(tenant)
        if held is None or held[1] <= time.monotonic():
            self._held.pop(tenant, None)
            return None
        return held[0]

    def acquire(self, tenant: str, owner: str, ttl_s: float) -> bool:
        with self._lock:
            if self._current(tenant) is not None:
                return False
            self._held[tenant] = (owner, time.monotonic() + ttl_s)
            return True

    def refresh(self, tenant: str, owner: str, ttl_s: float) -> bool:
        with self._lock:
            if self._current(tenant) not in (None, owner):
                return False
            self._held[tenant] = (owner, time.monotonic() + ttl_s)
            return True

    def release(self, tenant: str, owner: str) -> None:
        with self._lock:
            if self._current(tenant) == owner:
                del self._held[tenant]

    def holder(self, tenant: str) -> str | None:
        with self._lock:
            return self._current(tenant)


_REFRESH = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisTenantLocks:
    """``SET NX PX`` locks at ``<prefix>:lock:reindex:<tenant>``; refresh and release are owner-checked scripts."""

    def __init__(self, conn: JobsRedis):
        self.conn = conn
        self._refresh = conn.client.register_script(_REFRESH)
        self._release = conn.client.register_script(_RELEASE)

    def _key(self, tenant: str) -> str:
        return self.conn.key("lock", "reindex", tenant)

    def acquire(self, tenant: str, owner: str, ttl_s: float) -> bool:
        return bool(self.conn.call(lambda r: r.set(self._key(tenant), owner, nx=True, px=int(ttl_s * 1000))))

    def refresh(self, tenant: str, owner: str, ttl_s: float) -> bool:
        return bool(self.conn.call(lambda r: self._refresh(keys=[self._key(tenant)], args=[owner, int(ttl_s * 1000)])))

    def release(self, tenant: str, owner: str) -> None:
        self.conn.call(lambda r: self._release(keys=[self._key(tenant)], args=[owner]))

    def holder(self, tenant: str) -> str | None:
        return self.conn.call(lambda r: r.get(self._key(tenant)))
