"""Latency and throughput of ``POST /v1/retrieve`` over real HTTP, with a rank-bm25 baseline from the same run.

``fathom bench load`` (or ``python -m fathom.benchmarks.load``):

1. ingests a BEIR corpus (SciFact by default) into a fresh tenant through the
   real ingestion pipeline (:func:`fathom.benchmarks.quality.build_index`; the
   embedding cache makes a re-run cheap), times a plain ``rank_bm25`` retriever
   over the same chunks in-process, and optionally measures the rerank
   quality/latency curve on the same index;
2. starts ``fathom serve`` in its own process with production settings (one
   uvicorn worker, the configured reranker, the in-process answer cache on or
   off; rate limits stay on but are raised out of reach so they never refuse);
3. drives it over loopback with :mod:`fathom.benchmarks.loadgen` at each concurrency
   for each mode, scraping ``/metrics`` before and after every run for the
   service's own per-stage means (:mod:`fathom.benchmarks.prom`).

Schedules (every one derived from the seed, so reruns replay the same requests):

* ``off`` - the split's judged queries, shuffled, ``requests`` of them (cycled
  if fewer): every request runs the whole pipeline;
* ``on`` - ``cache_distinct`` of those queries, each twice, shuffled together:
  the first sending of a query misses, the second normally hits (about 50 %;
  the measured outcome counts are reported). Before each such run the tenant's
  cache generation is moved on with ``DELETE /v1/documents/<unknown id>``
  (the real invalidation path: every delete bumps it), so runs do not inherit
  each other's entries;
* ``hit`` - right after the last ``on`` run of a mode, the queries it answered
  ``ok`` (those are cached), cycled to ``requests``: the pure cache-hit path.

``healthz/c<N>`` rows run the same client against ``GET /healthz`` (a sync
route, so it takes the same thread-pool hop as retrieve): the floor that the
client, HTTP and the framework cost on this machine, shared cores included.
"""

from __future__ import annotations

import gc
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from fathom.benchmarks import loadgen, prom
from fathom.benchmarks.loadgen import Call, RunStats
from fathom.retrieval.ir_metrics import percentile
from fathom.benchmarks.quality import BenchIndex, build_index, rank_bm25_baseline
from fathom.benchmarks.server_process import ServerProcess, api_keys_json, start_server
from fathom.service.core.config import Settings
from fathom.service.auth import generate_key, hash_key

Log = Callable[[str], None]

# Row name -> (request mode, rerank flag).
MODES: dict[str, tuple[str, bool]] = {"bm25": ("bm25", False), "dense": ("dense", False),
                                      "hybrid": ("hybrid", False), "hybrid+rerank": ("hybrid", True)}
CACHES = ("off", "on")
# An id no document has: deleting it changes nothing but the tenant's cache generation.
CACHE_RESET_ID = "__fathom-bench-cache-reset__"
# Admission control stays in the request path (its cost is part of every request) but can never refuse here.
UNREACHABLE_LIMITS = {"FATHOM_LIMITS__KEY_RATE": "1000000", "FATHOM_LIMITS__KEY_BURST": "1000000",
                      "FATHOM_LIMITS__TENANT_RATE": "1000000", "FATHOM_LIMITS__TENANT_BURST": "1000000"}


@dataclass(frozen=True, slots=True)
class LoadOptions:
    dataset: Path
    split: str = "test"
    modes: tuple[str, ...] = tuple(MODES)
    caches: tuple[str, ...] = CACHES
    concurrency: tuple[int, ...] = (1, 4, 16)
    requests: int = 300            # timed requests of an ``off`` or ``hit`` run
    cache_distinct: int = 100      # distinct queries of an ``on`` run (each sent twice)
    max_seconds: float = 60.0      # bound of each timed run
    warmup: int = 8                # untimed requests before each run (non-judged queries of the dataset)
    top_k: int = 10
    seed: int = 13
    max_docs: int | None = None    # ingest only the first documents (tests, quick looks)
    keep_index: Path | None = None   # reuse/keep the ingested index here
    workdir: Path | None = None      # server logs (default: a temp folder)
    rerank_depths: tuple[int, ...] = ()   # the rerank quality/latency curve (empty: skipped)
    rerank_lengths: tuple[int, ...] = (256,)
    curve_queries: int | None = None
    server_env: Mapping[str, str] = field(default_factory=dict)   # extra FATHOM_* settings for the server

    def __post_init__(self) -> None:
        unknown = set(self.modes) - set(MODES) or set(self.caches) - set(CACHES)
        if unknown:
            raise ValueError(f"unknown modes/caches {sorted(unknown)}; modes: {list(MODES)}, caches: {list(CACHES)}")


# --- schedules --------------------------------------------------------------------------------
def shuffled_queries(queries: Mapping[str, str], seed: int) -> list[str]:
    """Query texts in a seeded order (sorted by id first, so the order does not depend on file order)."""
    texts = [queries[q] for q in sorted(queries)]
    random.Random(seed).shuffle(texts)
    return texts


def cycled(texts: Sequence[str], n: int) -> list[str]:
    if not texts:
        raise ValueError("no queries to schedule")
    return [texts[i % len(texts)] for i in range(n)]


def repeated(texts: Sequence[str], distinct: int, seed: int) -> list[str]:
    """``distinct`` queries, each twice, in one seeded shuffle: the cache-on schedule."""
    pool = list(texts[:distinct]) * 2
    random.Random(seed + 1).shuffle(pool)
    return pool


def retrieve_calls(texts: Sequence[str], mode: str, top_k: int) -> list[Call]:
    search, rerank = MODES[mode]
    return [Call("POST", "/v1/retrieve", {"query": t, "top_k": top_k, "mode": search, "rerank": rerank}, label=t)
            for t in texts]


# --- the baseline -----------------------------------------------------------------------------
def baseline_row(latencies_ms: Sequence[float]) -> dict[str, Any]:
    """rank-bm25 in-process, one query at a time (it is pure Python: threads would only share the GIL)."""
    total_s = sum(latencies_ms) / 1000.0
    return {"rps": round(len(latencies_ms) / total_s, 2) if total_s else 0.0,
            "p50_ms": round(percentile(latencies_ms, 50), 2), "p95_ms": round(percentile(latencies_ms, 95), 2),
            "p99_ms": round(percentile(latencies_ms, 99), 2), "max_ms": round(max(latencies_ms, default=0.0), 2),
            "errors": 0, "requests": len(latencies_ms)}


def rerank_curve(index: BenchIndex, depths: Sequence[int], lengths: Sequence[int], max_queries: int | None,
                 log: Log) -> list[dict[str, Any]]:
    """nDCG@10 and rerank-stage P50/P95 of the configured reranker per depth x max length, adaptive off and on."""
    from fathom.benchmarks.rerank_bench import curve_points, run_curve
    from fathom.retrieval.components import build_reranker

    reranker = build_reranker(index.settings, index.models)
    if reranker is None:
        return []
    return run_curve(index, curve_points([(reranker.name, reranker)], depths, lengths, adaptive=True),
                     max_queries=max_queries, log=log)


# --- the HTTP runs --------------------------------------------------------------------------
@dataclass
class Target:
    """The running server and the keys to use it."""

    server: ServerProcess
    app_headers: dict[str, str]
    admin_headers: dict[str, str]

    def reset_cache(self) -> None:
        """Move the tenant's cache generation on (a delete always bumps it, found or not)."""
        with httpx.Client(base_url=self.server.url, headers=self.admin_headers, timeout=30) as c:
            r = c.delete(f"/v1/documents/{CACHE_RESET_ID}")
            if r.status_code not in (204, 404):
                raise RuntimeError(f"cache reset answered {r.status_code}: {r.text[:200]}")


def timed_run(target: Target, schedule: Sequence[Call], concurrency: int, opts: LoadOptions,
              warmup: Sequence[Call] = (), headers: dict[str, str] | None = None) -> tuple[RunStats, dict[str, Any]]:
    """Warm-up (untimed), scrape, timed run, scrape: the stats and the summary row with server-side stages."""
    headers = target.app_headers if headers is None else headers
    base = target.server.url
    if warmup:
        loadgen.run(base, warmup, concurrency, headers=headers, max_seconds=opts.max_seconds)
    server_proc = psutil.Process(target.server.pid)
    with httpx.Client(base_url=base, timeout=30) as scraper:
        before = prom.scrape(scraper)
        cpu_server, cpu_client = _cpu_s(server_proc), time.process_time()
        stats = loadgen.run(base, schedule, concurrency, headers=headers, max_seconds=opts.max_seconds)
        cpu_server, cpu_client = _cpu_s(server_proc) - cpu_server, time.process_time() - cpu_client
        after = prom.scrape(scraper)
    row = stats.summary()
    route = schedule[0].path if schedule else ""
    n = max(len(stats.samples), 1)
    # CPU per request is far less sensitive to other tenants of a shared machine than wall-clock latency.
    row["cpu_ms_per_request"] = {"server": round(cpu_server / n * 1000.0, 2),
                                 "client": round(cpu_client / n * 1000.0, 2)}
    row["server"] = {"route_mean_ms": prom.route_mean_ms(before, after, route),
                     "stages": prom.stage_breakdown(before, after)}
    row["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return stats, row


def _cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _split_by_cache(stats: RunStats, row: dict[str, Any]) -> None:
    for outcome in ("hit-exact", "hit-semantic", "miss"):
        lat = stats.by_cache(outcome)
        if lat:
            row.setdefault("by_cache", {})[outcome] = {"requests": len(lat), "p50_ms": round(percentile(lat, 50), 2),
                                                      "p95_ms": round(percentile(lat, 95), 2)}


def cached_ok(stats: RunStats, schedule: Sequence[Call]) -> list[str]:
    """Distinct queries whose answer was ``ok`` (only those are cached), in schedule order."""
    seen: dict[str, None] = {}
    for s in stats.samples:
        if s.status == 200 and s.outcome == "ok":
            seen.setdefault(schedule[s.index].label, None)
    return list(seen)


def run_server_phase(target: Target, cache: str, texts: list[str], warm_texts: list[str], opts: LoadOptions,
                     log: Log, *, floor: bool) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    if floor:
        for c in opts.concurrency:
            health = [Call("GET", "/healthz")] * opts.requests
            _, rows[f"healthz/c{c}"] = timed_run(target, health, c, opts, warmup=health[:opts.warmup], headers={})
            log(_line(f"healthz/c{c}", rows[f"healthz/c{c}"]))
    for mode in opts.modes:
        last: tuple[RunStats, list[Call]] | None = None
        for c in opts.concurrency:
            warm = retrieve_calls(cycled(warm_texts, max(opts.warmup, 2 * c)), mode, opts.top_k)
            if cache == "off":
                schedule = retrieve_calls(cycled(texts, opts.requests), mode, opts.top_k)
                _, row = timed_run(target, schedule, c, opts, warmup=warm)
                row["schedule"] = "each query once (cycled), cache off"
            else:
                schedule = retrieve_calls(repeated(texts, opts.cache_distinct, opts.seed), mode, opts.top_k)
                loadgen.run(target.server.url, warm, c, headers=target.app_headers, max_seconds=opts.max_seconds)
                target.reset_cache()
                stats, row = timed_run(target, schedule, c, opts)
                _split_by_cache(stats, row)
                row["schedule"] = f"{opts.cache_distinct} queries x 2, shuffled, empty cache generation at start"
                last = (stats, schedule)
            key = f"{mode}/{cache}/c{c}"
            rows[key] = row
            log(_line(key, row))
        if last is not None:
            ok = cached_ok(*last)
            if not ok:
                log(f"  {mode}: no ok answer was cached; no cache-hit run")
                continue
            for c in opts.concurrency:
                schedule = retrieve_calls(cycled(ok, opts.requests), mode, opts.top_k)
                stats, row = timed_run(target, schedule, c, opts)
                _split_by_cache(stats, row)
                row["schedule"] = f"the {len(ok)} queries cached by the last 'on' run, cycled"
                rows[f"{mode}/hit/c{c}"] = row
                log(_line(f"{mode}/hit/c{c}", row))
    return rows


def _line(key: str, row: Mapping[str, Any]) -> str:
    extra = f" cache {row['cache_outcomes']}" if "cache_outcomes" in row else ""
    return (f"  {key:<26} {row['rps']:>8.1f} rps  p50 {row['p50_ms']:>7.1f}  p95 {row['p95_ms']:>7.1f}  "
            f"p99 {row['p99_ms']:>7.1f}  max {row['max_ms']:>7.1f} ms  errors {row['errors']}{extra}  "
            f"(load {row.get('load_avg_1m', '-')})")


def server_env(settings: Settings, state: Path, keys: str, cache: str, extra: Mapping[str, str]) -> dict[str, str]:
    """Production settings as an operator would set them, pointed at the benchmark's state."""
    env = {"FATHOM_HOME": str(settings.home.resolve()), "FATHOM_STATE_DIR": str(state),
           "FATHOM_REGISTRY_URL": f"sqlite:///{state / 'registry.db'}", "FATHOM_SERVICE__API_KEYS": keys,
           "FATHOM_CACHE__ENABLED": "true" if cache == "on" else "false", **UNREACHABLE_LIMITS}
    if settings.models.dir is not None:
        env["FATHOM_MODELS__DIR"] = str(settings.models.dir.resolve())
    env.update(extra)
    return env


def _warm_texts(index: BenchIndex, judged: Mapping[str, str], seed: int) -> list[str]:
    """Warm-up queries: the dataset's other (non-judged) queries, so warm-up never touches the timed set."""
    others = {q: t for q, t in index.dataset.queries.items() if q not in judged}
    return shuffled_queries(others or judged, seed + 2)


def measure_http(settings: Settings, opts: LoadOptions, *, state: Path, tenant: str, texts: list[str],
                 warm_texts: list[str], workdir: Path, log: Log = print) -> dict[str, Any]:
    """The HTTP part: one server per cache setting over ``state``, every mode x concurrency, the healthz floor."""
    app_key, admin_key = generate_key(), generate_key()
    keys = api_keys_json([{"id": "bench-app", "sha256": hash_key(app_key), "tenant": tenant, "role": "app"},
                          {"id": "bench-admin", "sha256": hash_key(admin_key), "tenant": tenant, "role": "admin"}])
    rows: dict[str, Any] = {}
    for i, cache in enumerate(opts.caches):
        log(f"server: cache {cache}")
        env = server_env(settings, state, keys, cache, opts.server_env)
        with start_server(env, workdir / f"server-cache-{cache}.log") as server:
            target = Target(server, {"Authorization": f"Bearer {app_key}"}, {"Authorization": f"Bearer {admin_key}"})
            rows.update(run_server_phase(target, cache, texts, warm_texts, opts, log, floor=i == 0))
    return rows


def run_load(settings: Settings, opts: LoadOptions, log: Log = print) -> dict[str, Any]:
    """The whole benchmark; returns ``{row key: row}`` plus ``rank-bm25``, ``rerank_curve`` and ``_meta``."""
    started = time.time()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="fathom-bench-load-") as tmp:
        index = build_index(opts.dataset, settings, split=opts.split, state_dir=opts.keep_index or Path(tmp) / "index",
                            max_docs=opts.max_docs, log=log)
        try:
            judged = index.dataset.judged_queries
            texts = shuffled_queries(judged, opts.seed)
            warm_texts = _warm_texts(index, judged, opts.seed)
            log(f"indexed {index.chunks} chunks ({index.ingest_seconds:.0f} s); {len(texts)} {opts.split} queries")
            _, lat = rank_bm25_baseline(index, {str(i): t for i, t in enumerate(texts)})
            results: dict[str, Any] = {"rank-bm25": baseline_row(lat)}
            log(_line("rank-bm25 (in-process)", results["rank-bm25"]))
            if opts.rerank_depths:
                results["rerank_curve"] = rerank_curve(index, opts.rerank_depths, opts.rerank_lengths,
                                                       opts.curve_queries, log)
            tenant, state = index.tenant.id, index.settings.state_path
            meta_index = {"chunks": index.chunks, "ingest": index.ingest_summary,
                          "ingest_seconds": round(index.ingest_seconds, 1)}
        finally:
            index.close()   # releases the shards: the server process must be their only owner
        del index
        gc.collect()
        results.update(measure_http(settings, opts, state=state, tenant=tenant, texts=texts, warm_texts=warm_texts,
                                    workdir=opts.workdir or Path(tmp), log=log))
    results["_meta"] = {
        "dataset": str(opts.dataset), "split": opts.split, "queries": len(texts), "tenant": tenant, **meta_index,
        "modes": {m: {"mode": MODES[m][0], "rerank": MODES[m][1]} for m in opts.modes},
        "concurrency": list(opts.concurrency), "requests": opts.requests, "cache_distinct": opts.cache_distinct,
        "max_seconds": opts.max_seconds, "warmup": opts.warmup, "top_k": opts.top_k, "seed": opts.seed,
        "latency": "client-side, request written to body parsed (asyncio httpx, closed loop, keep-alive)",
        "stages": "server-side means: /metrics fathom_stage_seconds sum/count differenced around each run",
        "cpu": "server: psutil CPU time of the server process / requests; client: this process's CPU time / requests",
        "rank_bm25": "rank_bm25.BM25Okapi over the same chunks (section + text, same tokenizer), in-process, "
                     "sequential; rps = queries / summed query time",
        "settings": {"rerank": settings.rerank.kind, "rerank_depth": settings.rerank.depth or "reranker default",
                     "rerank_adaptive": settings.rerank.adaptive, "prefetch_limit": settings.retrieval.prefetch_limit,
                     "hnsw": [settings.store.hnsw_m, settings.store.hnsw_ef_construct, settings.store.hnsw_ef],
                     "model_threads": settings.models.threads, "ort_spinning": settings.models.allow_spinning,
                     "server_env": dict(opts.server_env)},
        "machine": machine_info(load_before),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
    }
    return results


def machine_info(load_before: tuple[float, float, float]) -> dict[str, Any]:
    """Cores and load average before and after: on a shared machine a latency means little without them."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "load_avg_before": [round(x, 2) for x in load_before],
            "load_avg_after": [round(x, 2) for x in os.getloadavg()]}
