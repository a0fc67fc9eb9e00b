"""The service's settings: its own groups, composed onto the core root (``fathom.config.Settings``).

FastAPI full-stack template style: the service's configuration lives with the
service. The groups here (HTTP, answer cache, rate limits, Redis, tracing,
background jobs) are read by the service only; retrieval and ingestion see the
core groups they need through the same object (this :class:`Settings` is a
``fathom.config.Settings``). Environment variables are unchanged:
``FATHOM_SERVICE__PORT``, ``FATHOM_CACHE__TTL_S``, ``FATHOM_REDIS_URL``, ...
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from fathom.config import Settings as CoreSettings


class ServiceSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys_file: Path | None = None
    api_keys: str | None = Field(None, description='JSON {"keys": [{"id", "sha256", "tenant", "role"}]}')
    tenants_file: Path | None = Field(None, description="Per-tenant guard thresholds and golden sets (JSON)")
    request_timeout_ms: float = 2000.0
    max_request_bytes: int = 20 * 1024 * 1024
    log_level: str = "INFO"
    debug_log_content: bool = False
    # The request head is read before any authentication, so it is bounded by the HTTP protocol itself
    # (fathom/service/http_protocol.py): over a limit, 431 and the connection is closed.
    max_header_bytes: int = Field(32 * 1024, ge=1024, description="Most bytes of a request line + headers (431)")
    max_headers: int = Field(100, ge=8, description="Most header fields in one request (431)")
    header_timeout_s: float = Field(10.0, gt=0, description="A request head not complete this long after its "
                                                             "first byte (or the connection's start) is dropped")
    keep_alive_timeout_s: float = Field(5.0, gt=0, description="Idle keep-alive connections are closed after this")
    limit_concurrency: int | None = Field(None, ge=1, description="Most connections + requests at once before "
                                                                   "uvicorn answers 503 (default: unbounded)")
    metrics_token: str | None = Field(None, description="When set, GET /metrics needs 'Authorization: Bearer <this>' "
                                                         "(metrics name tenants in label values)")


class CacheSettings(BaseModel):
    """Answer cache: in Redis with ``FATHOM_REDIS_URL``, else in-process.

    Entries are scoped by tenant, live index version and the tenant's write
    generation (bumped by every ingest, delete and index activation), so a
    write invalidates by construction instead of by a purge that could race.
    """

    enabled: bool = True
    ttl_s: int = Field(600, ge=1, description="Lifetime of a cached answer")
    semantic: bool = Field(True, description="After an exact miss, reuse the answer of the same question asked "
                                             "differently (cosine and the same question terms)")
    # MiniLM cosines to "How do honeybees tell each other where flowers are?": "... where the flowers are?" 0.992,
    # "In what way do ..." 0.982, "Why do ..." 0.972, "... where flowers aren't?" 0.982, "How do wasps ..." 0.80;
    # "status of account 55501848" vs "... 55501847": 0.98+. The cosine alone cannot tell those apart, hence
    # semantic_same_terms (fathom bench cache: wrong-answer rates with and without it).
    semantic_threshold: float = Field(0.98, gt=0, le=1, description="Query-embedding cosine needed for a semantic hit")
    semantic_same_terms: bool = Field(True, description="A semantic hit also needs the same question terms (BM25 "
                                                        "terms in order: numbers, ids, names, negations); off = "
                                                        "cosine only, which serves near-miss questions")
    max_entries_per_scope: int = Field(128, ge=1, description="Answers kept per tenant/index version/parameters; "
                                                               "bounds memory and the semantic scan")
    memory_max_scopes: int = Field(256, ge=1, description="In-process cache only: scopes kept (least recently used)")
    key_prefix: str = Field("fathom", description="Redis key prefix (several deployments may share one Redis)")


class LimitSettings(BaseModel):
    """Admission control: token buckets per API key and per tenant, and request body sizes."""

    enabled: bool = True
    key_rate: float = Field(20.0, gt=0, description="Sustained requests per second per API key")
    key_burst: int = Field(40, ge=1, description="Requests an idle API key may send at once")
    tenant_rate: float = Field(100.0, gt=0, description="Sustained requests per second per tenant, all keys together")
    tenant_burst: int = Field(200, ge=1)
    retrieve_max_bytes: int = Field(64 * 1024, ge=1024,
                                    description="Body limit of POST /v1/retrieve; other routes use service.max_request_bytes")


class RedisSettings(BaseModel):
    """How this process uses ``FATHOM_REDIS_URL`` (the answer cache and the rate limiter share one client)."""

    timeout_ms: float = Field(250.0, gt=0, description="Connect and command timeout")
    retry_after_s: float = Field(5.0, ge=0, description="After a Redis error, Redis is bypassed this long before the next try")


class ObservabilitySettings(BaseModel):
    """Tracing (metrics are always on at /metrics; logs are JSON lines, see service.debug_log_content)."""

    trace_exporter: Literal["none", "console", "otlp"] = "none"
    otlp_endpoint: str | None = Field(None, description="OTLP/HTTP traces URL; default: the OTEL_EXPORTER_OTLP_* env vars")
    service_name: str = "fathom"


class JobSettings(BaseModel):
    """Background jobs (reindex): who consumes the queue, liveness, the per-tenant lock and the evaluation gate.

    The queue and job records live in Redis when ``FATHOM_REDIS_URL`` is set,
    in process memory otherwise.
    """

    consumer_in_api: bool | None = Field(
        None, description="Run the job consumer inside the API process. Default: yes, except with the server store "
                          "backend and Redis, where `fathom worker` processes consume (the embedded store can only "
                          "be written by the process that owns it, so with it the API always consumes)")
    heartbeat_s: float = Field(2.0, gt=0, description="How often a running job records that it is alive")
    heartbeat_timeout_s: float = Field(30.0, gt=0, description="A running job silent this long is declared dead: "
                                                                 "marked failed and its half-built version dropped")
    lock_ttl_s: float = Field(60.0, gt=0, description="Expiry of a running reindex's tenant lock (refreshed by heartbeats)")
    queued_lock_ttl_s: float = Field(3600.0, gt=0, description="How long a queued reindex reserves its tenant")
    retention_s: int = Field(7 * 24 * 3600, ge=60, description="Finished job records are kept this long (Redis)")
    gate_max_recall_drop: float = Field(0.02, ge=0, le=1, description="The swap is refused if recall@10 on the "
                                                                       "tenant's golden set drops by more than this")
    golden_max_queries: int = Field(1000, ge=1, description="Largest golden set accepted")
    key_prefix: str = Field("fathom", description="Redis key prefix of the queue, job records and locks")


class Settings(CoreSettings):
    """The root settings of every Fathom process (API, CLI, worker); build it with :func:`get_settings`."""

    redis_url: str | None = None

    service: ServiceSettings = ServiceSettings()
    cache: CacheSettings = CacheSettings()
    limits: LimitSettings = LimitSettings()
    redis: RedisSettings = RedisSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    jobs: JobSettings = JobSettings()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once from the environment."""
    return Settings()
