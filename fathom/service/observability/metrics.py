"""Prometheus metrics, in a registry owned by the runtime (served at ``GET /metrics``).

Labels never carry query or chunk text. ``tenant`` is a label on the guard and
rate-limit counters: tenants are few in this product (tens), and the
per-tenant ``no_relevant_context`` rate is the hallucination-risk signal::

    sum by (tenant) (rate(fathom_guard_outcomes_total{status="no_relevant_context"}[5m]))
      / sum by (tenant) (rate(fathom_guard_outcomes_total[5m]))

With thousands of tenants, drop the label here and read the rate from the logs.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Enum, Histogram, generate_latest

STAGES = ("auth", "ratelimit", "cache", "embed", "search", "rerank", "guard", "flag", "total")
CACHE_STATES = ["ok", "memory", "bypassed", "off"]
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.stage_seconds = Histogram("fathom_stage_seconds", "Time per retrieval stage (total: the whole retrieve call)",
                                       ["stage"], buckets=_BUCKETS, registry=r)
        self.request_seconds = Histogram("fathom_request_seconds", "HTTP request latency by route template and status",
                                         ["route", "status"], buckets=_BUCKETS, registry=r)
        self.requests = Counter("fathom_requests", "HTTP requests by route template and status", ["route", "status"],
                                registry=r)
        self.retrievals = Counter("fathom_retrieve", "Retrieve answers by outcome status (ok, degraded, "
                                  "no_relevant_context, unavailable, deadline_exceeded)", ["status"], registry=r)
        self.guard_outcomes = Counter("fathom_guard_outcomes", "Answers by tenant, guard status and deciding reason "
                                      "(the last reason code; 'none' when there is none); cache hits included",
                                      ["tenant", "status", "reason"], registry=r)
        self.cache_lookups = Counter("fathom_cache_lookups", "Answer cache lookups by result", ["result"], registry=r)
        self.cache_state = Enum("fathom_cache_state", "Answer cache backend state", states=CACHE_STATES, registry=r)
        self.rate_limited = Counter("fathom_rate_limited", "Requests refused with 429, by tenant and bucket",
                                    ["tenant", "scope"], registry=r)
        self.redis_errors = Counter("fathom_redis_errors", "Redis calls that failed (then bypassed)", ["op"], registry=r)

    def observe_stages(self, stages_ms: dict[str, float]) -> None:
        for stage, ms in stages_ms.items():
            self.stage_seconds.labels(stage).observe(ms / 1000.0)

    def render(self, cache_state: str) -> bytes:
        self.cache_state.state(cache_state)
        return generate_latest(self.registry)
