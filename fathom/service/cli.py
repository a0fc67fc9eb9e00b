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
    fathom bench load|scale|hnsw     P50/P95/P99 over HTTP, scale to 1M chunks, HNSW recall (fathom/benchmarks/perf_commands.py)
    fathom reranker train|distil     train a cross-encoder reranker offline (needs the `train` extra)
    fathom judge calibrate --tenant T  fit the relevance judge to a tenant's corpus from its golden set
    fathom judge fit --dataset PATH  fit the judge's shipped default on a judged train split
    fathom bench guard               answerable vs on-topic unanswerable vs off-domain (fathom/benchmarks/guard_protocol.py)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import fathom.ingest  # noqa: F401  (DO_NOT_TRACK before anything imports unstructured)
from fathom.retrieval.tenancy import tenant_arg
from fathom.service.core.config import Settings, get_settings
from fathom.service.job_commands import add_job_commands
from fathom.service.judge_commands import add_judge_commands
from fathom.service.store_commands import add_store_commands

SAMPLE_CORPUS = Path(__file__).parent / "sample_corpus"
DEMO_TENANT = "demo"


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


class CommandGroups:
    """What a CLI plugin gets: the top-level subcommands, and command groups (``bench``, ``models``) to add to.

    The outer layers (``fathom.benchmarks``, ``fathom.training``) add their commands through the ``fathom.cli``
    entry points (pyproject.toml), so this module never imports them: a serving install without the training
    extra still has a working ``fathom`` command, and the import graph has no arrow from service to the tools.
    """

    def __init__(self, sub: Any) -> None:
        self.sub = sub
        self._groups: dict[str, Any] = {}

    def group(self, name: str, help_: str) -> Any:
        """The subparsers of ``fathom <name> ...``, created by whichever plugin asks first."""
        if name not in self._groups:
            self._groups[name] = self.sub.add_parser(name, help=help_).add_subparsers(dest="sub", required=True)
        return self._groups[name]


def register_plugins(groups: CommandGroups) -> None:
    """Let every installed ``fathom.cli`` entry point add its commands (benchmarks, training)."""
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group="fathom.cli"), key=lambda e: e.name):
        ep.load()(groups)


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

    from fathom.ingest.ingest_pipeline import IngestItem, IngestReport
    from fathom.ingest.progress import RateMeter
    from fathom.retrieval.tenancy import Tenant

    items = []
    for root in paths:
        base = root if root.is_dir() else root.parent
        for f in iter_files([root]):
            items.append(IngestItem(document_id=str(f.relative_to(base)), path=f, filename=f.name, tags=tags,
                                    source_uri=f.resolve().as_uri()))
    report = IngestReport()
    meter = RateMeter(len(items))
    with Progress(TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[rates]}"), disable=quiet, transient=False) as bar:
        task = bar.add_task("ingest", total=len(items), rates="")

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, rates=meter.update(done, report.chunks_written).describe())

        rt.ingest.ingest(Tenant(tenant), items, total=len(items), progress=progress, report=report)
    live = rt.store.live_version(Tenant(tenant))
    if live is not None:
        from fathom.retrieval.store.contract import IndexRef

        t0 = time.perf_counter()
        rt.store.optimize(IndexRef(Tenant(tenant), live))
        report.seconds["optimize"] = time.perf_counter() - t0
    return report


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from fathom.service.runtime import Runtime

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

    from fathom.service.app import create_app
    from fathom.service.http_protocol import uvicorn_options
    from fathom.service.observability.logs import configure_logging

    configure_logging(settings.service)
    # One worker process: the embedded engine's shards belong to one process.
    # Scale out with the server backend (see helm/). Fathom writes its own JSON access log, and
    # log_config=None sends uvicorn's lines through the same JSON handler. The HTTP protocol bounds request
    # heads (size, field count, time: fathom/service/http_protocol.py).
    uvicorn.run(create_app(settings), host=host or settings.service.host, port=port or settings.service.port,
                log_level=settings.service.log_level.lower(), access_log=False, log_config=None,
                **uvicorn_options(settings.service))


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    serve(settings, args.host, args.port)
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Ingest the bundled sample corpus into tenant ``demo``, create an app key, serve."""
    from fathom.service.auth import add_key
    from fathom.service.runtime import Runtime

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
    from fathom.service.auth import add_key

    keys_file = Path(args.file or settings.service.api_keys_file or settings.home / "api_keys.json")
    key = add_key(keys_file, tenant=args.tenant, role=args.role, key_id=args.id)
    print(key)
    print(f"(hash stored in {keys_file})", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fathom", description="Fathom retrieval service")
    sub = p.add_subparsers(dest="cmd", required=True)

    ing = sub.add_parser("ingest", help="ingest files or folders into a tenant")
    ing.add_argument("paths", nargs="+")
    ing.add_argument("--tenant", required=True, type=tenant_arg)
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
    kc.add_argument("--tenant", type=tenant_arg)
    kc.add_argument("--role", choices=["app", "admin", "operator"], default="app")
    kc.add_argument("--id")
    kc.add_argument("--file")
    kc.set_defaults(fn=cmd_keys_create)

    add_job_commands(sub)
    add_store_commands(sub)
    groups = CommandGroups(sub)
    add_judge_commands(groups)
    register_plugins(groups)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.fn(args, get_settings()) or 0)


if __name__ == "__main__":
    sys.exit(main())
