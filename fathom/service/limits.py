"""Admission control: token buckets per API key and per tenant, and request body size limits.

Buckets live in Redis when it is configured (one atomic script checks and
takes from both buckets, so every process shares the same budget) and in
process memory otherwise, or while Redis is bypassed: an outage then loosens
limits to per-process ones instead of dropping them.

Bucket keys are ``<prefix>:rl:{tenant}:key:<key id>`` and ``...:{tenant}:tenant``;
the tenant is the Redis Cluster hash tag so both keys of a request share a slot.
An operator key gets one bucket per tenant it acts on.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fathom.service.core.config import LimitSettings
from fathom.retrieval.tenancy import Tenant
from fathom.service.problems import problem_response
from fathom.service.redis_link import RedisBypassed, RedisLink


@dataclass(frozen=True, slots=True)
class Admission:
    allowed: bool
    retry_after_s: float = 0.0
    scope: str = ""          # which bucket refused: "key" or "tenant"


@dataclass(frozen=True, slots=True)
class _Bucket:
    scope: str               # "key" or "tenant"
    name: str
    rate: float              # tokens per second
    burst: float             # capacity


# KEYS: bucket keys. ARGV: rate_1, burst_1, rate_2, burst_2, ...
# Refill from the elapsed time (Redis clock, so processes' clocks do not matter), then take one token from
# every bucket or from none. Returns {1, 0, 0} or {0, wait in ms, index of the refusing bucket}.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tokens, wait, which = {}, 0, 0
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local have, ts = tonumber(state[1]) or burst, tonumber(state[2]) or now
  have = math.min(burst, have + math.max(0, now - ts) * rate / 1000)
  tokens[i] = have
  if have < 1 then
    local w = math.ceil((1 - have) * 1000 / rate)
    if w > wait then wait, which = w, i end
  end
end
if wait > 0 then return {0, wait, which} end
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  redis.call('HSET', key, 'tokens', tostring(tokens[i] - 1), 'ts', now)
  redis.call('PEXPIRE', key, math.ceil(burst * 1000 / rate) + 1000)
end
return {1, 0, 0}
"""


class _MemoryBuckets:
    def __init__(self) -> None:
        self._state: dict[str, tuple[float, float]] = {}   # key -> (tokens, monotonic seconds)
        self._lock = threading.Lock()

    def take(self, buckets: list[_Bucket]) -> Admission:
        with self._lock:
            now = time.monotonic()
            levels = []
            for b in buckets:
                have, ts = self._state.get(b.name, (b.burst, now))
                levels.append(min(b.burst, have + (now - ts) * b.rate))
            waits = [((1 - have) / b.rate, b) for have, b in zip(levels, buckets) if have < 1]
            if waits:
                wait, b = max(waits, key=lambda w: w[0])
                return Admission(False, wait, b.scope)
            for have, b in zip(levels, buckets):
                self._state[b.name] = (have - 1, now)
            return Admission(True)


class RateLimiter:
    def __init__(self, settings: LimitSettings, *, prefix: str, link: RedisLink | None = None):
        self.settings = settings
        self.prefix = prefix
        self.link = link
        self._memory = _MemoryBuckets()
        self._take = link.client.register_script(_TAKE) if link is not None else None

    def _buckets(self, key_id: str, tenant: Tenant) -> list[_Bucket]:
        s, base = self.settings, f"{self.prefix}:rl:{{{tenant.id}}}"
        return [_Bucket("key", f"{base}:key:{key_id}", s.key_rate, s.key_burst),
                _Bucket("tenant", f"{base}:tenant", s.tenant_rate, s.tenant_burst)]

    def admit(self, key_id: str, tenant: Tenant) -> Admission:
        """Take one token from the key's and the tenant's buckets, or say how long to wait."""
        buckets = self._buckets(key_id, tenant)
        if self._take is not None and self.link is not None:
            try:
                allowed, wait_ms, which = self.link.run("rate_limit", lambda r: self._take(  # type: ignore[misc]
                    keys=[b.name for b in buckets], args=_flatten(buckets), client=r))
            except RedisBypassed:
                pass
            else:
                if allowed:
                    return Admission(True)
                return Admission(False, int(wait_ms) / 1000.0, buckets[int(which) - 1].scope)
        return self._memory.take(buckets)


def _flatten(buckets: list[_Bucket]) -> list[Any]:
    return [x for b in buckets for x in (b.rate, b.burst)]


def retry_after_header(seconds: float) -> str:
    """HTTP ``Retry-After`` takes whole seconds; round up so a client that obeys it is admitted."""
    return str(max(1, math.ceil(seconds)))


class BodyLimit:
    """Reject request bodies over the route's limit with a 413 problem, before the app reads them.

    A declared ``Content-Length`` is refused up front; a chunked body is
    counted as it streams and refused once it passes the limit.
    """

    def __init__(self, app: ASGIApp, *, default: int, per_path: dict[str, int]):
        self.app, self.default, self.per_path = app, default, per_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.default)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = problem_response(413, "payload_too_large", "Request body too large",
                                        f"at most {limit} bytes on this route", scope["path"], limit_bytes=limit)
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Raised inside the body read: FastAPI re-raises HTTPExceptions and the problem handler answers.
                    raise HTTPException(413, f"Request body too large: at most {limit} bytes on this route")
            return message

        await self.app(scope, counted, send)
