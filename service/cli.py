"""The ``fathom`` command.

    fathom models prepare            export + quantise + verify the models (needs the `export` extra)
    fathom ingest PATH --tenant T    ingest files or folders, with a progress bar and a report
    fathom serve                     run the API (uvicorn)
    fathom demo                      ingest the bundled sample corpus, create a key, serve
    fathom keys create --tenant T    create an API key (prints it once; stores its hash)
    fathom reindex --tenant T        rebuild a tenant's index as a new version, gated, then swap
    fathom rollback --tenant T       make the previous index version live again
    fathom worker                    consume reindex jobs from Redis (server store backend)
    fathom store init [--tenant T]   create each tenant's collection, indexes and alias (idempotent; Helm hook)
    fathom bench quality --dataset PATH [--json OUT] [--rerankers NAME,...]
    fathom bench rerank-curve        nDCG@10 and rerank P95 over depth x max length x rerankers
    fathom bench load|scale|hnsw     P50/P95/P99 over HTTP, scale to 1M chunks, HNSW recall (service/perf_commands.py)
    fathom reranker train|distil     train a cross-encoder reranker offline (needs the `train` extra)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import ingest  # noqa: F401  (DO_NOT_TRACK before anything imports unstructured)
from retrieval.settings import Settings, get_settings
from service.jobs.commands import add_job_commands
from service.perf_commands import add_perf_commands
from service.reranker_commands import add_rerank_curve_command, add_reranker_commands
from service.store_commands import add_store_commands

SAMPLE_CORPUS = Path(__file__).parent / "sample_corpus"
DEMO_TENANT = "demo"


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# --- models ------------------------------------------------------------------------------
def cmd_models_prepare(args: argparse.Namespace, settings: Settings) -> int:
    from retrieval.models.prepare import prepare_all

    report = prepare_all(settings, force=args.force, include_mpnet=not args.no_mpnet)
    _print_json(report)
    return 0


def cmd_models_export_ce(args: argparse.Namespace, settings: Settings) -> int:
    """Export a local HF-format cross-encoder once; serving then needs only onnxruntime + tokenizers."""
    from retrieval.models.prepare import export_cross_encoder

    src = Path(args.hf_dir)
    out = Path(args.out) if args.out else settings.model_dir / "rerankers" / src.name
    _print_json(export_cross_encoder(src, out, quantize=not args.no_int8))
    print(f"serve it with FATHOM_RERANK__KIND=cross-encoder FATHOM_RERANK__CROSS_ENCODER_DIR={out}", file=sys.stderr)
    return 0


# --- ingest --------------------------------------------------------------------------------
def iter_files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(p)
    return out


def ingest_paths(rt: Any, tenant: str, paths: list[Path], tags: dict[str, str], *, quiet: bool = False) -> Any:
    """Ingest files with a progress bar; document id = path relative to the given folder."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ingest.pipeline import IngestItem
    from retrieval.tenancy import Tenant

    items = []
    for root in paths:
        base = root if root.is_dir() else root.parent
        for f in iter_files([root]):
            items.append(IngestItem(document_id=str(f.relative_to(base)), path=f, filename=f.name, tags=tags,
                                    source_uri=f.resolve().as_uri()))
    with Progress(TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=quiet, transient=False) as bar:
        task = bar.add_task("ingest", total=len(items))
        report = rt.ingest.ingest(Tenant(tenant), items, total=len(items),
                                  progress=lambda done, total: bar.update(task, completed=done))
    live = rt.store.live_version(Tenant(tenant))
    if live is not None:
        from retrieval.store.base import IndexRef

        rt.store.optimize(IndexRef(Tenant(tenant), live))
    return report


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from service.runtime import Runtime

    tags = dict(t.split("=", 1) for t in args.tag)
    rt = Runtime.open(settings)
    try:
        report = ingest_paths(rt, args.tenant, [Path(p) for p in args.paths], tags)
    finally:
        rt.close()
    summary = report.summary()
    summary["failed_documents"] = [{"document_id": o.document_id, "reason": o.reason, "error": o.error}
                                   for o in report.outcomes if o.status == "failed"]
    _print_json(summary)
    return 0 if not report.count("failed") or args.allow_failures else 2


# --- serving --------------------------------------------------------------------------------
def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    from service.app import create_app
    from service.observability.logs import configure_logging

    configure_logging(settings.service)
    # One worker process: the embedded engine's shards belong to one process.
    # Scale out with the server backend (see helm/). Fathom writes its own JSON access log, and
    # log_config=None sends uvicorn's lines through the same JSON handler.
    uvicorn.run(create_app(settings), host=host or settings.service.host, port=port or settings.service.port,
                log_level=settings.service.log_level.lower(), access_log=False, log_config=None)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    serve(settings, args.host, args.port)
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Ingest the bundled sample corpus into tenant ``demo``, create an app key, serve."""
    from service.auth import add_key
    from service.runtime import Runtime

    keys_file = settings.service.api_keys_file or settings.home.resolve() / "api_keys.json"
    settings = settings.model_copy(update={"service": settings.service.model_copy(update={"api_keys_file": keys_file})})
    rt = Runtime.open(settings)
    try:
        report = ingest_paths(rt, DEMO_TENANT, [SAMPLE_CORPUS], {"corpus": "sample"})
    finally:
        rt.close()
    print(json.dumps(report.summary()))
    key = add_key(Path(keys_file), tenant=DEMO_TENANT, role="admin", key_id="demo-admin")
    host, port = args.host or settings.service.host, args.port or settings.service.port
    print(f"\nAPI key for tenant '{DEMO_TENANT}' (stored hashed in {keys_file}):\n  {key}\n")
    print(f"Try:\n  curl -s http://{host}:{port}/v1/retrieve -H 'Authorization: Bearer {key}' "
          "-H 'Content-Type: application/json' -d '{\"query\": \"How do honeybees tell each other where flowers are?\"}'\n")
    serve(settings, host, port)
    return 0


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from service.auth import add_key

    keys_file = Path(args.file or settings.service.api_keys_file or settings.home / "api_keys.json")
    key = add_key(keys_file, tenant=args.tenant, role=args.role, key_id=args.id)
    print(key)
    print(f"(hash stored in {keys_file})", file=sys.stderr)
    return 0


# --- benchmarks -----------------------------------------------------------------------------
def cmd_bench_quality(args: argparse.Namespace, settings: Settings) -> int:
    from benchmarks.quality import format_table, run_quality

    if args.rerank:
        settings = settings.model_copy(update={"rerank": settings.rerank.model_copy(update={"kind": args.rerank})})
    dataset = Path(args.dataset) if args.dataset else settings.data_dir / "scifact"
    extra = []
    if args.rerankers:
        from benchmarks.rerank_bench import load_rerankers

        extra = load_rerankers(settings, args.rerankers.split(","), fp32=args.rerank_fp32)
    results = run_quality(dataset, settings, split=args.split, chunker=args.chunker, max_queries=args.max_queries,
                          state_dir=Path(args.keep_index) if args.keep_index else None, source=args.source,
                          extra_rerankers=extra)
    print(format_table(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    return 0


def cmd_bench_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    """Fit the guard's confidence calibration on a train split; prints the settings to use."""
    from benchmarks.calibrate import calibrate
    from benchmarks.quality import build_index

    dataset = Path(args.dataset) if args.dataset else settings.data_dir / "scifact"
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

    from benchmarks.ingest_bench import format_ingest, run_ingest_bench

    with tempfile.TemporaryDirectory(prefix="fathom-bench-ingest-") as tmp:
        results = run_ingest_bench(settings, settings.data_dir, tmp=Path(tmp))
    print(format_ingest(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fathom", description="Fathom retrieval service")
    sub = p.add_subparsers(dest="cmd", required=True)

    models = sub.add_parser("models", help="model provisioning").add_subparsers(dest="sub", required=True)
    prep = models.add_parser("prepare", help="export to ONNX, quantise int8 and verify")
    prep.add_argument("--force", action="store_true")
    prep.add_argument("--no-mpnet", action="store_true", help="skip all-mpnet-base-v2 (the mpnet reranker needs it)")
    prep.set_defaults(fn=cmd_models_prepare)
    ece = models.add_parser("export-cross-encoder", help="export a local HF-format cross-encoder folder to ONNX (+ int8)")
    ece.add_argument("hf_dir", help="folder with config.json, weights and tokenizer files")
    ece.add_argument("--out", help="destination (default: <model dir>/rerankers/<folder name>)")
    ece.add_argument("--no-int8", action="store_true")
    ece.set_defaults(fn=cmd_models_export_ce)

    ing = sub.add_parser("ingest", help="ingest files or folders into a tenant")
    ing.add_argument("paths", nargs="+")
    ing.add_argument("--tenant", required=True)
    ing.add_argument("--tag", action="append", default=[], help="key=value, repeatable")
    ing.add_argument("--allow-failures", action="store_true", help="exit 0 even if some documents failed")
    ing.set_defaults(fn=cmd_ingest)

    for name, fn, help_ in (("serve", cmd_serve, "run the API"),
                            ("demo", cmd_demo, "ingest the sample corpus and serve it")):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--host")
        sp.add_argument("--port", type=int)
        sp.set_defaults(fn=fn)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="sub", required=True)
    kc = keys.add_parser("create")
    kc.add_argument("--tenant")
    kc.add_argument("--role", choices=["app", "admin", "operator"], default="app")
    kc.add_argument("--id")
    kc.add_argument("--file")
    kc.set_defaults(fn=cmd_keys_create)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="sub", required=True)
    bq = bench.add_parser("quality", help="nDCG/recall/MRR on a BEIR-layout dataset")
    bq.add_argument("--dataset", help="BEIR folder (default: <data_dir>/scifact)")
    bq.add_argument("--json", help="write results JSON here")
    bq.add_argument("--split", default="test")
    bq.add_argument("--chunker", choices=["semantic", "fixed"])
    bq.add_argument("--rerank", choices=["none", "mpnet", "cross-encoder"])
    bq.add_argument("--max-queries", type=int)
    bq.add_argument("--keep-index", metavar="DIR", help="keep the ingested index in DIR and reuse it next time")
    bq.add_argument("--source", choices=["corpus", "raw"], default="corpus",
                    help="raw: ingest the dataset's original files (raw/*.tar.gz) through the file path")
    bq.add_argument("--rerankers", metavar="NAME,...", help="add a row per trained reranker (<model_dir>/rerankers/)")
    bq.add_argument("--rerank-fp32", action="store_true", help="with --rerankers: also each one's fp32 row")
    bq.set_defaults(fn=cmd_bench_quality)
    add_rerank_curve_command(bench)
    add_perf_commands(bench)
    bc = bench.add_parser("calibrate", help="fit the guard's confidence calibration on a train split")
    bc.add_argument("--dataset", help="BEIR folder (default: <data_dir>/scifact)")
    bc.add_argument("--split", default="train")
    bc.add_argument("--keep-index", metavar="DIR")
    bc.set_defaults(fn=cmd_bench_calibrate)
    bi = bench.add_parser("ingest", help="ingest throughput, chunker comparison, raw files vs corpus.jsonl")
    bi.add_argument("--json", help="write results JSON here")
    bi.set_defaults(fn=cmd_bench_ingest)

    add_job_commands(sub)
    add_reranker_commands(sub)
    add_store_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.fn(args, get_settings()) or 0)


if __name__ == "__main__":
    sys.exit(main())
