"""The job system's Redis client, and the one place a Redis error becomes :class:`JobsUnavailable`.

Separate from the answer cache's client on purpose: that one has a 250 ms
timeout and a circuit breaker because the cache is optional; here Redis is the
queue, reads block for a second at a time, and an outage must surface as a
clear error rather than be bypassed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import redis
from redis.exceptions import RedisError

from fathom.service.jobs.model import JobsUnavailable

T = TypeVar("T")


def describe(url: str) -> str:
    """host:port/db of a Redis URL, without credentials (it goes into error messages)."""
    parts = urlsplit(url)
    db = parts.path.lstrip("/") or "0"
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}/{db}"


class JobsRedis:
    def __init__(self, url: str, prefix: str):
        self.client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2.0, socket_timeout=10.0,
                                           health_check_interval=15)
        self.where = describe(url)
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def call(self, fn: Callable[[redis.Redis], T]) -> T:
        try:
            return fn(self.client)
        except RedisError as exc:
            raise JobsUnavailable(f"the job queue is unavailable: Redis at {self.where} failed "
                                  f"({type(exc).__name__}: {exc})") from exc

    def close(self) -> None:
        self.client.close()
