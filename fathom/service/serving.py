"""The request-path machinery around retrieval: Redis link, answer cache, rate limiter, metrics, tracing.

Built once per runtime from settings. Without ``FATHOM_REDIS_URL`` every part
is in-process, so ``fathom demo`` needs no extra server; with it, the cache,
the write generations and the rate limits are shared by all processes.
"""

from __future__ import annotations

from dataclasses import dataclass

from fathom.service.core.config import Settings
from fathom.service.cache.answers import AnswerCache, settings_fingerprint
from fathom.service.cache.generation import Generations, MemoryGenerations, RedisGenerations
from fathom.service.cache.cache_backends import AnswerStore, MemoryAnswerStore, RedisAnswerStore
from fathom.service.limits import RateLimiter
from fathom.service.observability.metrics import Metrics
from fathom.service.observability.tracing import Tracing
from fathom.service.redis_link import RedisLink


@dataclass
class Serving:
    redis: RedisLink | None
    metrics: Metrics
    tracing: Tracing
    generations: Generations
    answer_cache: AnswerCache | None
    limiter: RateLimiter | None


def build_serving(settings: Settings) -> Serving:
    metrics = Metrics()
    link = None
    if settings.redis_url:
        link = RedisLink(settings.redis_url, timeout_ms=settings.redis.timeout_ms,
                         retry_after_s=settings.redis.retry_after_s,
                         on_error=lambda op: metrics.redis_errors.labels(op).inc())
    c, prefix = settings.cache, settings.cache.key_prefix
    generations: Generations = RedisGenerations(link, prefix) if link else MemoryGenerations()
    answer_cache = None
    if c.enabled:
        store: AnswerStore = (RedisAnswerStore(link, prefix=prefix, cap=c.max_entries_per_scope, ttl_s=c.ttl_s) if link
                              else MemoryAnswerStore(cap=c.max_entries_per_scope, ttl_s=c.ttl_s,
                                                     max_scopes=c.memory_max_scopes))
        answer_cache = AnswerCache(store, generations, c, settings_fingerprint(settings), link)
    limiter = RateLimiter(settings.limits, prefix=prefix, link=link) if settings.limits.enabled else None
    return Serving(link, metrics, Tracing.from_settings(settings.observability), generations, answer_cache, limiter)
