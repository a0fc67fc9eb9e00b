"""The process's one Redis client, behind a circuit breaker.

Redis is an accelerator (answer cache) and a coordinator (rate limits), never a
dependency an answer needs. So every call goes through :meth:`RedisLink.run`,
which turns any Redis error into :class:`RedisBypassed` and then, for
``retry_after_s``, refuses further calls at once: during an outage requests do
not each pay a connect timeout, and the callers carry on without Redis.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

log = logging.getLogger(__name__)

T = TypeVar("T")


class RedisBypassed(RuntimeError):
    """Redis is unavailable (or was a moment ago); the caller goes on without it."""


class RedisLink:
    def __init__(self, url: str, *, timeout_ms: float, retry_after_s: float,
                 on_error: Callable[[str], None] | None = None):
        timeout = timeout_ms / 1000.0
        # No client-side retries: the breaker decides when to try again, and a retry would double the wait.
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                           retry=Retry(NoBackoff(), 0))
        self._retry_after_s = retry_after_s
        self._on_error = on_error
        self._open_until = 0.0
        self._healthy = True
        self._lock = threading.Lock()

    @property
    def healthy(self) -> bool:
        """False from a failed call until a later call succeeds (what readiness and metrics report)."""
        return self._healthy

    def run(self, op: str, fn: Callable[[redis.Redis], T]) -> T:
        """``fn(client)``, or :class:`RedisBypassed` if Redis failed now or within the last ``retry_after_s``."""
        if time.monotonic() < self._open_until:
            raise RedisBypassed(f"{op}: redis bypassed after a recent error")
        try:
            result = fn(self.client)
        except RedisError as exc:
            with self._lock:
                self._open_until = time.monotonic() + self._retry_after_s
                first = self._healthy
                self._healthy = False
            if first:
                log.warning("redis unavailable during %s, bypassing it for %.1fs: %s", op, self._retry_after_s,
                            type(exc).__name__)
            if self._on_error is not None:
                self._on_error(op)
            raise RedisBypassed(f"{op}: {type(exc).__name__}") from exc
        if not self._healthy:
            with self._lock:
                self._healthy = True
            log.warning("redis reachable again")
        return result

    def ping(self) -> bool:
        try:
            return bool(self.run("ping", lambda r: r.ping()))
        except RedisBypassed:
            return False

    def close(self) -> None:
        self.client.close()
