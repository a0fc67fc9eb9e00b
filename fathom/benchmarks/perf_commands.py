"""``fathom bench load``, ``fathom bench scale`` and ``fathom bench hnsw``: performance benchmarks.

    fathom bench load  [--json OUT]   P50/P95/P99 over HTTP per mode x cache x concurrency, rank-bm25 baseline,
                                      the rerank depth curve, the scale benchmark (unless --scale '') and, with
                                      --with-hnsw, the HNSW grid: everything in one command
    fathom bench scale [--json OUT]   ingest, disk, memory and query P95 at 16k / 100k / 1M chunks and over tenants
    fathom bench hnsw  [--json OUT]   dense-leg recall@100 vs exact search over the HNSW parameter grid

Each writes ``<name>.json``, ``<name>.md`` and ``<name>.png`` under
``benchmarks/results/`` (gitignored). Every run is bounded: requests and
seconds per HTTP run, sizes and query counts for the rest.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fathom.service.core.config import Settings
from fathom.benchmarks.config import data_dir


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _env_pairs(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.startswith("FATHOM_"):
            raise SystemExit(f"fathom: --server-env takes FATHOM_NAME=value, got {pair!r}")
        out[key] = value
    return out


def _scale_options(args: argparse.Namespace, sizes: tuple[int, ...]) -> Any:
    from fathom.benchmarks.scale import ScaleOptions
    from fathom.benchmarks.synth import Perturbation

    return ScaleOptions(sizes=sizes, tenant_total=args.tenant_total, tenant_splits=_ints(args.tenant_splits),
                        datasets=_names(args.datasets),
                        queries=args.scale_queries, recall_queries=args.recall_queries, efs=_ints(args.efs),
                        threads=args.threads, bm25_max_chunks=args.bm25_max_chunks,
                        perturbation=Perturbation(noise=args.noise, seed=args.seed),
                        base_dir=Path(args.base_dir) if args.base_dir else None,
                        workdir=Path(args.workdir) if args.workdir else None)


def _write(results: dict[str, Any], args: argparse.Namespace) -> None:
    from fathom.benchmarks.report import RESULTS_DIR, markdown, write

    paths = write(results, args.name, Path(args.out_dir) if args.out_dir else RESULTS_DIR,
                  Path(args.json) if args.json else None)
    print(markdown(results))
    print("wrote " + ", ".join(str(p) for p in paths))


def cmd_bench_load(args: argparse.Namespace, settings: Settings) -> int:
    from fathom.benchmarks.load import LoadOptions, run_load

    opts = LoadOptions(
        dataset=Path(args.dataset) if args.dataset else data_dir() / "scifact", split=args.split,
        modes=_names(args.modes), caches=_names(args.caches), concurrency=_ints(args.concurrency),
        requests=args.requests, cache_distinct=args.cache_distinct, max_seconds=args.max_seconds, warmup=args.warmup,
        top_k=args.top_k, seed=args.seed, max_docs=args.max_docs,
        keep_index=Path(args.keep_index) if args.keep_index else None,
        workdir=Path(args.workdir) if args.workdir else None, rerank_depths=_ints(args.rerank_depths),
        rerank_lengths=_ints(args.rerank_lengths), curve_queries=args.curve_queries,
        server_env=_env_pairs(args.server_env))
    results = run_load(settings, opts)
    sizes = _ints(args.scale)
    if sizes:
        from fathom.benchmarks.scale import run_scale

        results.update(run_scale(settings, _scale_options(args, sizes)))
    if args.with_hnsw:
        from fathom.benchmarks.hnsw import HnswOptions, run_hnsw

        results.update(run_hnsw(settings, HnswOptions(base_dir=Path(args.base_dir) if args.base_dir else None,
                                                      workdir=Path(args.workdir) if args.workdir else None)))
    _write(results, args)
    return 0


def cmd_bench_scale(args: argparse.Namespace, settings: Settings) -> int:
    from fathom.benchmarks.scale import run_scale

    _write(run_scale(settings, _scale_options(args, _ints(args.sizes))), args)
    return 0


def cmd_bench_hnsw(args: argparse.Namespace, settings: Settings) -> int:
    from fathom.benchmarks.hnsw import HnswOptions, run_hnsw
    from fathom.benchmarks.synth import Perturbation

    opts = HnswOptions(ms=_ints(args.ms), ef_constructs=_ints(args.ef_constructs), efs=_ints(args.efs),
                       sizes=_ints(args.sizes), queries=args.queries, perturbation=Perturbation(noise=args.noise,
                                                                                                 seed=args.seed),
                       base_dir=Path(args.base_dir) if args.base_dir else None,
                       workdir=Path(args.workdir) if args.workdir else None)
    _write(run_hnsw(settings, opts), args)
    return 0


def _output_args(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("--json", help="also write the results JSON here")
    p.add_argument("--out-dir", help="folder for <name>.json/.md/.png (default fathom/benchmarks/results)")
    p.add_argument("--name", default=name, help=f"file name stem (default {name})")
    p.add_argument("--seed", type=int, default=13)


def _scale_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenant-total", type=int, default=1_000_000, help="chunks spread over --tenant-splits tenants")
    p.add_argument("--tenant-splits", default="10,100", help="tenant counts for the multi-tenant points ('' skips)")
    p.add_argument("--scale-queries", type=int, default=300, help="SciFact test queries per scale point")
    p.add_argument("--recall-queries", type=int, default=100)
    p.add_argument("--efs", default="64,128,256", help="query-time ef values of the recall check")
    p.add_argument("--threads", type=int, default=4, help="threads of the concurrent pipeline run")
    p.add_argument("--bm25-max-chunks", type=int, default=100_000, help="largest size with a rank-bm25 baseline")
    p.add_argument("--noise", type=float, default=0.025, help="per-dimension Gaussian noise of synthetic copies")
    p.add_argument("--datasets", default="scifact,cacm", help="real corpora (under data_dir) to grow it from")
    p.add_argument("--base-dir", help="where SciFact + CACM are ingested for the synthetic corpus "
                                      "(kept and reused; default <home>/bench/scale-base)")
    p.add_argument("--workdir", help="parent folder of the temporary stores (GBs at 1M chunks)")


def add_perf_commands(bench: Any) -> None:
    bl = bench.add_parser("load", help="latency/throughput over HTTP, rank-bm25 baseline, rerank curve, scale")
    bl.add_argument("--dataset", help="BEIR folder (default: <data_dir>/scifact)")
    bl.add_argument("--split", default="test", help="whose judged queries make the schedule")
    bl.add_argument("--modes", default="bm25,dense,hybrid,hybrid+rerank")
    bl.add_argument("--caches", default="off,on", help="answer cache off and/or on (on adds the pure-hit runs)")
    bl.add_argument("--concurrency", default="1,4,16")
    bl.add_argument("--requests", type=int, default=300, help="timed requests per cache-off and cache-hit run")
    bl.add_argument("--cache-distinct", type=int, default=100, help="distinct queries (x2) per cache-on run")
    bl.add_argument("--max-seconds", type=float, default=60.0, help="time bound of each run")
    bl.add_argument("--warmup", type=int, default=8, help="untimed requests before each run (non-judged queries)")
    bl.add_argument("--top-k", type=int, default=10)
    bl.add_argument("--max-docs", type=int, help="ingest only the first N documents")
    bl.add_argument("--keep-index", metavar="DIR", help="keep the ingested index in DIR and reuse it next time")
    bl.add_argument("--rerank-depths", default="10,20,30,50,100", help="rerank curve depths ('' skips the curve)")
    bl.add_argument("--rerank-lengths", default="256", help="rerank curve max lengths (cross-encoders only)")
    bl.add_argument("--curve-queries", type=int, help="queries of the rerank curve (default: all judged)")
    bl.add_argument("--server-env", action="append", default=[], metavar="FATHOM_X=V",
                    help="extra setting for the server process (repeatable), e.g. FATHOM_MODELS__THREADS=1")
    bl.add_argument("--scale", default="16000,100000,1000000", help="scale benchmark sizes ('' skips it)")
    bl.add_argument("--with-hnsw", action="store_true", help="also the HNSW recall grid (fathom bench hnsw defaults)")
    _scale_args(bl)
    _output_args(bl, "load")
    bl.set_defaults(fn=cmd_bench_load)

    bs = bench.add_parser("scale", help="ingest, disk, memory and query P95 vs corpus size and tenants")
    bs.add_argument("--sizes", default="16000,100000,1000000")
    _scale_args(bs)
    _output_args(bs, "scale")
    bs.set_defaults(fn=cmd_bench_scale)

    bh = bench.add_parser("hnsw", help="dense recall@100 vs exact search over m x ef_construct x ef")
    bh.add_argument("--ms", default="16,32")
    bh.add_argument("--ef-constructs", default="100,200")
    bh.add_argument("--efs", default="64,128,200,256,512")
    bh.add_argument("--sizes", default="0,100000", help="0 = the real SciFact + CACM chunks only")
    bh.add_argument("--queries", type=int, default=200)
    bh.add_argument("--noise", type=float, default=0.025)
    bh.add_argument("--base-dir")
    bh.add_argument("--workdir")
    _output_args(bh, "hnsw")
    bh.set_defaults(fn=cmd_bench_hnsw)
