"""A closed-loop HTTP load generator: ``concurrency`` asyncio workers share one fixed request schedule.

Why this shape rather than wrk/hey/locust:

* **fixed schedule** - the requests (which query, in which order) are decided
  before the run from a seed, so every configuration sees the same queries in
  the same order and a rerun on another machine replays the same work; wrk and
  hey send one body, locust picks at random per user;
* **closed loop** - each worker sends its next request when its previous answer
  has arrived, so "concurrency c" means exactly c requests in flight, which is
  what the latency-vs-concurrency figures are about (an open-loop arrival rate
  would need a target rate per configuration that we do not know in advance);
* **the answer is read** - every response body is parsed, so the run records the
  service's own ``cache`` outcome, retrieval ``status`` and ``timings_ms``
  per request (hit ratios and server-side stage times come from the same run).

Latency is taken from just before the request is written to just after the
body is parsed: what a Python caller sees. The generator shares the machine's
cores with the server; ``fathom.benchmarks.load`` measures the same machinery against
``GET /healthz`` so the report can show that floor next to the real figures.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from fathom.retrieval.ir_metrics import percentile


@dataclass(frozen=True, slots=True)
class Call:
    """One scheduled request. ``label`` is what the report groups by (e.g. the query text)."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    label: str = ""


@dataclass(frozen=True, slots=True)
class Sample:
    """What happened to one request of the schedule."""

    index: int                 # position in the schedule
    latency_ms: float
    status: int                # HTTP status; 0 when the transport failed (refused, reset, timeout)
    cache: str | None = None   # the answer's ``cache`` field (retrieve only)
    outcome: str | None = None   # the answer's ``status`` field (retrieve only)


@dataclass(slots=True)
class RunStats:
    """All samples of one timed run, and how long it took."""

    samples: list[Sample]
    wall_s: float
    scheduled: int
    truncated: bool            # stopped by the time bound before the schedule was used up

    @property
    def latencies(self) -> list[float]:
        return [s.latency_ms for s in self.samples if s.status == 200]

    def summary(self) -> dict[str, Any]:
        """Throughput over the whole run; latency percentiles over the successful requests only."""
        lat = self.latencies
        errors = sum(1 for s in self.samples if s.status != 200)
        row: dict[str, Any] = {
            "rps": round(len(self.samples) / self.wall_s, 2) if self.wall_s > 0 else 0.0,
            "p50_ms": round(percentile(lat, 50), 2), "p95_ms": round(percentile(lat, 95), 2),
            "p99_ms": round(percentile(lat, 99), 2), "max_ms": round(max(lat, default=0.0), 2),
            "mean_ms": round(sum(lat) / len(lat), 2) if lat else 0.0,
            "errors": errors, "requests": len(self.samples), "scheduled": self.scheduled,
            "wall_s": round(self.wall_s, 2), "truncated": self.truncated,
        }
        if errors:
            row["errors_by_status"] = {str(k): v for k, v in sorted(Counter(
                s.status for s in self.samples if s.status != 200).items())}
        caches = Counter(s.cache for s in self.samples if s.cache is not None)
        if caches:
            row["cache_outcomes"] = dict(sorted(caches.items()))
        outcomes = Counter(s.outcome for s in self.samples if s.outcome is not None)
        if outcomes:
            row["answer_status"] = dict(sorted(outcomes.items()))
        return row

    def by_cache(self, outcome: str) -> list[float]:
        """Latencies of the successful requests whose answer had this cache outcome (e.g. ``hit-exact``)."""
        return [s.latency_ms for s in self.samples if s.status == 200 and s.cache == outcome]


def _fields(response: httpx.Response) -> tuple[str | None, str | None]:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return None, None
    body = response.json()
    if not isinstance(body, dict):
        return None, None
    cache, status = body.get("cache"), body.get("status")
    return (cache if isinstance(cache, str) else None), (status if isinstance(status, str) else None)


async def _drive(client: httpx.AsyncClient, schedule: Sequence[Call], concurrency: int, max_seconds: float) -> RunStats:
    samples: list[Sample] = []
    cursor = 0
    t0 = time.perf_counter()
    stop_at = t0 + max_seconds

    async def worker() -> None:
        nonlocal cursor
        while cursor < len(schedule) and time.perf_counter() < stop_at:
            index, call = cursor, schedule[cursor]
            cursor += 1   # single-threaded event loop: no lock needed between the check and the increment
            start = time.perf_counter()
            try:
                response = await client.request(call.method, call.path, json=call.body)
                cache, outcome = _fields(response)
                status = response.status_code
            except httpx.HTTPError:
                cache, outcome, status = None, None, 0
            samples.append(Sample(index, (time.perf_counter() - start) * 1000.0, status, cache, outcome))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    samples.sort(key=lambda s: s.index)
    return RunStats(samples, wall, len(schedule), truncated=len(samples) < len(schedule))


async def run_async(base_url: str, schedule: Sequence[Call], concurrency: int, *, headers: dict[str, str],
                    max_seconds: float, timeout_s: float = 30.0) -> RunStats:
    """Send the schedule with ``concurrency`` requests in flight; stop issuing new ones after ``max_seconds``."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=timeout_s) as client:
        return await _drive(client, schedule, concurrency, max_seconds)


def run(base_url: str, schedule: Sequence[Call], concurrency: int, *, headers: dict[str, str], max_seconds: float,
        timeout_s: float = 30.0) -> RunStats:
    """Blocking wrapper: one event loop and one connection pool per run, both closed when it ends."""
    return asyncio.run(run_async(base_url, schedule, concurrency, headers=headers, max_seconds=max_seconds,
                                 timeout_s=timeout_s))
