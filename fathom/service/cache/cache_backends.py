"""Where cached answers live: Redis (shared by all processes) or this process's memory.

Both keep, per *scope* (tenant + index version + generation + request
parameters), at most ``cap`` entries, newest first, each with the query
embedding it was computed for. Exact lookups go straight to an entry; the
semantic step reads the scope's (id, embedding) index and compares. Evicting
an entry from the index deletes it, so the cap bounds memory, not just the scan.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fathom.service.redis_link import RedisLink

VECTOR_DTYPE = np.float16    # half the bytes to move and scan; ~1e-3 cosine error, far below the hit threshold
ENTRY_ID_CHARS = 32          # hex: 128 bits


@dataclass(frozen=True, slots=True)
class Scope:
    tenant: str
    digest: str     # hex digest of (config, index version, generation, request parameters)


IndexItem = tuple[str, np.ndarray]   # (entry id, normalised query embedding; empty for BM25-only scopes)


class AnswerStore(Protocol):
    backend: str

    def fetch(self, scope: Scope, entry_id: str) -> tuple[bytes | None, list[IndexItem]]:
        """The entry if present, and the scope's index (for the semantic step)."""
        ...

    def get(self, scope: Scope, entry_id: str) -> bytes | None: ...

    def put(self, scope: Scope, entry_id: str, vector: np.ndarray, value: bytes) -> None: ...


@dataclass(slots=True)
class _Entry:
    expires: float
    vector: np.ndarray
    value: bytes


class MemoryAnswerStore:
    """LRU of scopes, each an LRU of at most ``cap`` entries with a TTL."""

    backend = "memory"

    def __init__(self, *, cap: int, ttl_s: float, max_scopes: int):
        self.cap, self.ttl_s, self.max_scopes = cap, ttl_s, max_scopes
        self._scopes: OrderedDict[Scope, OrderedDict[str, _Entry]] = OrderedDict()
        self._lock = threading.Lock()

    def _live(self, scope: Scope) -> OrderedDict[str, _Entry] | None:
        entries = self._scopes.get(scope)
        if entries is None:
            return None
        now = time.monotonic()
        for entry_id in [k for k, e in entries.items() if e.expires <= now]:
            del entries[entry_id]
        self._scopes.move_to_end(scope)
        return entries

    def fetch(self, scope: Scope, entry_id: str) -> tuple[bytes | None, list[IndexItem]]:
        with self._lock:
            entries = self._live(scope)
            if not entries:
                return None, []
            hit = entries.get(entry_id)
            return (hit.value if hit else None), [(k, e.vector) for k, e in reversed(entries.items())]

    def get(self, scope: Scope, entry_id: str) -> bytes | None:
        with self._lock:
            entries = self._live(scope)
            hit = entries.get(entry_id) if entries else None
            return hit.value if hit else None

    def put(self, scope: Scope, entry_id: str, vector: np.ndarray, value: bytes) -> None:
        with self._lock:
            entries = self._scopes.setdefault(scope, OrderedDict())
            self._scopes.move_to_end(scope)
            entries[entry_id] = _Entry(time.monotonic() + self.ttl_s, vector.astype(VECTOR_DTYPE), value)
            entries.move_to_end(entry_id)
            while len(entries) > self.cap:
                entries.popitem(last=False)
            while len(self._scopes) > self.max_scopes:
                self._scopes.popitem(last=False)


# KEYS[1]: the scope's index list. ARGV: entry key prefix, entry id, index item, value, ttl seconds, cap.
# One script so that the entry, its index item and the eviction of the oldest entry happen together.
_PUT = """
local item = ARGV[3]
redis.call('SET', ARGV[1] .. ARGV[2], ARGV[4], 'EX', ARGV[5])
redis.call('LREM', KEYS[1], 0, item)
redis.call('LPUSH', KEYS[1], item)
redis.call('EXPIRE', KEYS[1], ARGV[5])
local cap = tonumber(ARGV[6])
while redis.call('LLEN', KEYS[1]) > cap do
  local old = redis.call('RPOP', KEYS[1])
  redis.call('DEL', ARGV[1] .. string.sub(old, 1, %d))
end
return 1
""" % ENTRY_ID_CHARS


class RedisAnswerStore:
    """Keys ``<prefix>:ans:{tenant}:<scope>`` (index list) and ``...:<scope>:<entry id>`` (entries).

    The tenant is the Redis Cluster hash tag, so a scope's keys share a slot
    and the put script may touch all of them. Round trips: one for an exact
    hit or a miss (entry and index fetched together), one more for a semantic hit.
    """

    backend = "redis"

    def __init__(self, link: RedisLink, *, prefix: str, cap: int, ttl_s: int):
        self.link, self.prefix, self.cap, self.ttl_s = link, prefix, cap, ttl_s
        self._put = link.client.register_script(_PUT)

    def _index_key(self, scope: Scope) -> str:
        return f"{self.prefix}:ans:{{{scope.tenant}}}:{scope.digest[:32]}"

    def fetch(self, scope: Scope, entry_id: str) -> tuple[bytes | None, list[IndexItem]]:
        index = self._index_key(scope)

        def both(r: Any) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            pipe.get(f"{index}:{entry_id}")
            pipe.lrange(index, 0, self.cap - 1)
            return pipe.execute()

        value, items = self.link.run("cache_fetch", both)
        return value, [(raw[:ENTRY_ID_CHARS].decode("ascii"), np.frombuffer(raw[ENTRY_ID_CHARS:], dtype=VECTOR_DTYPE))
                       for raw in items]

    def get(self, scope: Scope, entry_id: str) -> bytes | None:
        return self.link.run("cache_get", lambda r: r.get(f"{self._index_key(scope)}:{entry_id}"))

    def put(self, scope: Scope, entry_id: str, vector: np.ndarray, value: bytes) -> None:
        index = self._index_key(scope)
        item = entry_id.encode("ascii") + vector.astype(VECTOR_DTYPE).tobytes()
        self.link.run("cache_put", lambda r: self._put(keys=[index], args=[f"{index}:", entry_id, item, value,
                                                                               self.ttl_s, self.cap], client=r))
