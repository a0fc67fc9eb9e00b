"""``fathom bench ...``: the benchmark commands, registered onto the CLI as a ``fathom.cli`` plugin.

The serving CLI (``fathom.service.cli``) finds this module through its entry point and never imports it, so the
benchmarks stay the outer layer: they import the service, never the other way round.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fathom.benchmarks.judge_fit import add_judge_fit_command
from fathom.benchmarks.perf_commands import add_perf_commands
from fathom.service.core.config import Settings
from fathom.benchmarks.config import data_dir


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _report(table: str, results: Any, json_out: str | None) -> int:
    """Print a benchmark's table and, with ``--json OUT``, write its full results there."""
    print(table)
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(results, indent=2, ensure_ascii=False))
        print(f"wrote {json_out}")
    return 0


def cmd_bench_quality(args: argparse.Namespace, settings: Settings) -> int:
    from fathom.benchmarks.quality import format_table, run_quality

    if args.rerank:
        settings = settings.model_copy(update={"rerank": settings.rerank.model_copy(update={"kind": args.rerank})})
    dataset = Path(args.dataset) if args.dataset else data_dir() / "scifact"
    extra = []
    if args.rerankers:
        from fathom.benchmarks.rerank_bench import load_rerankers

        extra = load_rerankers(settings, args.rerankers.split(","), fp32=args.rerank_fp32)
    results = run_quality(dataset, settings, split=args.split, chunker=args.chunker, max_queries=args.max_queries,
                          state_dir=Path(args.keep_index) if args.keep_index else None, source=args.source,
                          extra_rerankers=extra)
    return _report(format_table(results), results, args.json)


def cmd_bench_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    """Fit the guard's confidence calibration on a train split; prints the settings to use."""
    from fathom.benchmarks.calibrate import calibrate
    from fathom.benchmarks.quality import build_index

    dataset = Path(args.dataset) if args.dataset else data_dir() / "scifact"
    index = build_index(dataset, settings, split=args.split, state_dir=Path(args.keep_index) if args.keep_index else None)
    try:
        result = calibrate(index, rerank=settings.rerank.kind != "none")
    finally:
        index.close()
    _print_json(result)
    if "dense" in result:
        print(f"FATHOM_GUARD__DENSE_CALIBRATION='[{result['dense']['a']}, {result['dense']['b']}]'", file=sys.stderr)
    return 0


def cmd_bench_ingest(args: argparse.Namespace, settings: Settings) -> int:
    import tempfile

    from fathom.benchmarks.ingest_bench import format_ingest, run_ingest_bench

    with tempfile.TemporaryDirectory(prefix="fathom-bench-ingest-") as tmp:
        results = run_ingest_bench(settings, data_dir(), tmp=Path(tmp), corpora=args.corpora.split(","),
                                   chunkers=args.chunkers.split(","), extras=args.extras,
                                   quality=not args.no_quality)
    return _report(format_ingest(results), results, args.json)


def cmd_bench_cache(args: argparse.Namespace, settings: Settings) -> int:
    from fathom.benchmarks.cache_bench import format_cache, run_cache_bench

    result = run_cache_bench(settings, threshold=args.threshold)
    return _report(format_cache(result), result, args.json)


def cmd_bench_injection(args: argparse.Namespace, settings: Settings) -> int:
    from fathom.benchmarks.injection_bench import format_injection, run_injection_bench

    result = run_injection_bench(data_dir())
    return _report(format_injection(result), result, args.json)


def cmd_bench_guard(args: argparse.Namespace, settings: Settings) -> int:
    """The unanswerable-question protocol (fathom/benchmarks/guard_protocol.py) on each dataset."""
    from fathom.benchmarks.guard_protocol import (SUMMARY_KEYS, format_report, golden_calibration, plot,
                                                  pseudo_calibration, run_guard_bench)

    datasets = [Path(p) for p in args.datasets.split(",")] if args.datasets else \
        [data_dir() / "scifact", data_dir() / "cacm"]
    seeds = [int(s) for s in args.seeds.split(",")]
    results = run_guard_bench(datasets, settings, seeds=seeds, split=args.split,
                              keep_index=Path(args.keep_index) if args.keep_index else None,
                              off_domain=Path(args.off_domain) if args.off_domain else None,
                              golden_fraction=args.golden_fraction,
                              calibrate={"golden": golden_calibration, "pseudo": pseudo_calibration(
                                  args.pseudo_queries, args.pseudo_keep)}.get(args.calibrate))
    if args.png:
        plot(results, Path(args.png))
        print(f"wrote {args.png}")
    for r in results.values():
        r.pop("_confidences", None)
    _report(format_report(results), results, args.json)
    print(json.dumps({name: {k: r[k] for k in SUMMARY_KEYS} for name, r in results.items()}))
    return 0


def cmd_bench_judge_signal(args: argparse.Namespace, settings: Settings) -> int:
    """What a trained cross-encoder's scores add to the judge (fathom/benchmarks/judge_signal.py)."""
    from fathom.benchmarks.judge_signal import format_signal, run_judge_signal
    from fathom.benchmarks.rerank_bench import reranker_dir

    datasets = [Path(n) if "/" in n else data_dir() / n for n in args.datasets.split(",")]
    results = run_judge_signal(datasets, settings, reranker_dir(settings, args.reranker),
                               depths=[int(d) for d in args.depths.split(",")], split=args.split,
                               keep_index=Path(args.keep_index) if args.keep_index else None)
    return _report(format_signal(results), results, args.json)


def cmd_bench_context(args: argparse.Namespace, settings: Settings) -> int:
    from fathom.benchmarks.context_bench import format_rows, plot, run_context_bench

    names = args.datasets.split(",")
    datasets = [Path(n) if "/" in n else data_dir() / n for n in names]
    results = run_context_bench(datasets, settings, budgets=[int(b) for b in args.budgets.split(",")],
                                split=args.split, top_k=args.top_k, max_queries=args.max_queries,
                                tokenizer=args.tokenizer, keep_index=Path(args.keep_index) if args.keep_index else None)
    _print_json(results["meta"])
    png = Path(args.plot) if args.plot else (Path(args.json).with_suffix(".png") if args.json else None)
    if png is not None:
        plot(results["rows"], png)
        print(f"wrote {png}")
    if args.json:   # the rows go to --json; the tokenizer error and latency baseline beside them
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).with_suffix(".meta.json").write_text(json.dumps(results["meta"], indent=2))
    return _report(format_rows(results["rows"]), results["rows"], args.json)


def register(cli: Any) -> None:
    """``fathom.cli`` entry point: ``fathom bench quality|calibrate|ingest|cache|injection|context|guard|load|scale|hnsw``
    and ``fathom judge fit``."""
    bench = cli.group("bench", "benchmarks")
    bq = bench.add_parser("quality", help="nDCG/recall/MRR on a BEIR-layout dataset")
    bq.add_argument("--dataset", help="BEIR folder (default: <data_dir>/scifact)")
    bq.add_argument("--json", help="write results JSON here")
    bq.add_argument("--split", default="test")
    bq.add_argument("--chunker", choices=["semantic", "fixed", "late"])
    bq.add_argument("--rerank", choices=["none", "mpnet", "cross-encoder"])
    bq.add_argument("--max-queries", type=int)
    bq.add_argument("--keep-index", metavar="DIR", help="keep the ingested index in DIR and reuse it next time")
    bq.add_argument("--source", choices=["corpus", "raw"], default="corpus",
                    help="raw: ingest the dataset's original files (raw/*.tar.gz) through the file path")
    bq.add_argument("--rerankers", metavar="NAME,...", help="add a row per trained reranker (<model_dir>/rerankers/)")
    bq.add_argument("--rerank-fp32", action="store_true", help="with --rerankers: also each one's fp32 row")
    bq.set_defaults(fn=cmd_bench_quality)
    bc = bench.add_parser("calibrate", help="fit the guard's confidence calibration on a train split")
    bc.add_argument("--dataset", help="BEIR folder (default: <data_dir>/scifact)")
    bc.add_argument("--split", default="train")
    bc.add_argument("--keep-index", metavar="DIR")
    bc.set_defaults(fn=cmd_bench_calibrate)
    bi = bench.add_parser("ingest", help="ingest throughput vs the bare encoder, stage seconds, RSS, quality per "
                                         "chunker")
    bi.add_argument("--json", help="write results JSON here")
    bi.add_argument("--corpora", default="scifact,cacm", help="BEIR folders under the data dir, comma-separated")
    bi.add_argument("--chunkers", default="semantic,late,fixed", help="chunkers to compare, comma-separated")
    bi.add_argument("--extras", action="store_true", help="also the 81 fixture files and CACM raw HTML vs corpus")
    bi.add_argument("--no-quality", action="store_true", help="throughput only (no retrieval quality runs)")
    bi.set_defaults(fn=cmd_bench_ingest)
    bk = bench.add_parser("cache", help="semantic answer cache: hit rate and wrong-answer rate on labelled pairs")
    bk.add_argument("--json", help="write results JSON here")
    bk.add_argument("--threshold", type=float, help="semantic cosine threshold (default: cache.semantic_threshold)")
    bk.set_defaults(fn=cmd_bench_cache)
    bj = bench.add_parser("injection", help="prompt-injection flags: recall on labelled attacks, false positives on "
                                            "benign texts, SciFact and CACM")
    bj.add_argument("--json", help="write results JSON here")
    bj.set_defaults(fn=cmd_bench_injection)
    bx = bench.add_parser("context", help="evidence recall vs tokens: naive top-k truncation vs context packing")
    bx.add_argument("--datasets", default="scifact,cacm", help="names under data_dir, or paths (comma-separated)")
    bx.add_argument("--budgets", default="256,512,1024,2048")
    bx.add_argument("--split", default="test")
    bx.add_argument("--top-k", type=int, default=20,
                    help="chunks retrieved per query (the candidates every method packs)")
    bx.add_argument("--max-queries", type=int)
    bx.add_argument("--tokenizer", default="cl100k_base", help="what counts tokens: cl100k_base, approx or a "
                                                               "tokenizer.json path (approx is also measured against it)")
    bx.add_argument("--keep-index", metavar="DIR", help="keep each dataset's index in DIR/<dataset> and reuse it")
    bx.add_argument("--json", help="write the rows here (and <name>.meta.json, <name>.png beside it)")
    bx.add_argument("--plot", help="PNG of evidence recall vs tokens (default: beside --json)")
    bx.set_defaults(fn=cmd_bench_context)
    bs = bench.add_parser("judge-signal", help="what a trained cross-encoder's scores add to the judge: AUC and "
                                               "unanswerable rejection, answerable vs evidence-withheld heads")
    bs.add_argument("--reranker", required=True, help="a trained reranker under <model_dir>/rerankers/")
    bs.add_argument("--datasets", default="scifact,cacm", help="names under data_dir, or paths (comma-separated)")
    bs.add_argument("--depths", default="3,5,10", help="head chunks the cross-encoder scores")
    bs.add_argument("--split", default="test")
    bs.add_argument("--keep-index", metavar="DIR", help="keep each dataset's index in DIR/<dataset> and reuse it")
    bs.add_argument("--json", help="write the results here")
    bs.set_defaults(fn=cmd_bench_judge_signal)
    bg = bench.add_parser("guard", help="answerable vs on-topic unanswerable vs off-domain: rejection, AUC, calibration")
    bg.add_argument("--datasets", metavar="PATH,...", help="BEIR folders (default: <data_dir>/scifact,<data_dir>/cacm); "
                                                           "each one's off-domain questions are the others' queries")
    bg.add_argument("--off-domain", metavar="PATH", help="take the off-domain queries from this BEIR folder instead")
    bg.add_argument("--seeds", default="1,2,3", help="seeds of the golden/evaluation cut and of the removed half")
    bg.add_argument("--split", default="test")
    bg.add_argument("--golden-fraction", type=float, default=0.5,
                    help="share of the judged queries handed to the tenant as its golden set (never evaluated)")
    bg.add_argument("--calibrate", nargs="?", const="golden", choices=("golden", "pseudo"),
                    help="fit the tenant's judge calibration each seed (fathom judge calibrate): on its golden half "
                         "(golden, the default), or on pseudo-queries cut from its corpus (pseudo: measured, not shipped; "
                         "README guard section)")
    bg.add_argument("--pseudo-queries", type=int, default=200,
                    help="--calibrate pseudo: questions cut from the corpus")
    bg.add_argument("--pseudo-keep", type=float, default=0.6,
                    help="--calibrate pseudo: share of a sentence's words each keeps")
    bg.add_argument("--keep-index", metavar="DIR", help="keep each dataset's index in DIR/<name> and reuse it")
    bg.add_argument("--json", help="write one object per dataset here")
    bg.add_argument("--png", help="plot the confidence distributions here")
    bg.set_defaults(fn=cmd_bench_guard)
    add_perf_commands(bench)
    add_judge_fit_command(cli.group("judge", "the relevance judge: fit its default, calibrate a tenant"))
