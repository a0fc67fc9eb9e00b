"""``fathom worker``, ``fathom reindex`` and ``fathom rollback``.

With the edge backend (the default) the API server owns the store and runs
jobs itself: use the HTTP admin API while it is up. These commands touch the
store directly only when no API process owns it, and say so otherwise.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from typing import Any

from fathom.retrieval.tenancy import tenant_arg
from fathom.service.core.config import Settings

WORKER_HELP = """Consume reindex jobs from the Redis queue (FATHOM_REDIS_URL is required).

This is the job consumer for the server store backend (a Qdrant cluster): run
as many as you like, beside the API processes. With the embedded (edge)
backend the API process owns the store and runs jobs itself; a worker may run
only while no API process is up, and refuses to start otherwise."""


def claim_edge_store(settings: Settings) -> Any:
    """With the edge backend, claim the store for this process or explain who owns it (exit code 2)."""
    from fathom.service.jobs.ownership import StoreOwned, StoreOwnership

    if settings.store.backend != "edge":
        return None
    try:
        return StoreOwnership.claim(settings.state_path)
    except StoreOwned as exc:
        print(f"fathom: {exc}. Use the HTTP admin API of that process, or stop it first.", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from fathom.service.runtime import Runtime

    if not settings.redis_url:
        print("fathom worker needs FATHOM_REDIS_URL; without Redis, jobs run inside the API process", file=sys.stderr)
        return 2
    ownership = claim_edge_store(settings)
    rt = Runtime.open(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        assert rt.jobs is not None
        rt.jobs.start_consumer(rt.job_services(), ownership)
        print(f"fathom worker {rt.jobs.worker}: consuming jobs from Redis", file=sys.stderr, flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        rt.close()
    return 0


def _wait(jobs: Any, job_id: str, tenant: str) -> int:
    from fathom.service.jobs.model import TERMINAL, JobStatus

    last = None
    while True:
        job = jobs.get(job_id, tenant)
        where = (job.status.value, job.phase, job.progress.get("done"), job.progress.get("total"))
        if where != last:
            print(f"{job.status.value} {job.phase or ''} {job.progress}", file=sys.stderr, flush=True)
            last = where
        if job.status in TERMINAL:
            print(json.dumps({"id": job.id, "status": job.status.value, "result": job.result, "error": job.error},
                             indent=2, default=str))
            return 0 if job.status is JobStatus.SUCCEEDED else 1
        time.sleep(1.0)


def cmd_reindex(args: argparse.Namespace, settings: Settings) -> int:
    """Queue a reindex (with Redis), or run one in this process (without Redis; needs the store)."""
    from fathom.retrieval.tenancy import Tenant
    from fathom.service.jobs.reindex import KIND, ReindexOptions
    from fathom.service.jobs.system import JobSystem
    from fathom.service.runtime import Runtime

    tenant = Tenant(args.tenant).id
    options = ReindexOptions(chunker=args.chunker, max_chunk_tokens=args.max_chunk_tokens, bm25_k1=args.bm25_k1,
                             bm25_b=args.bm25_b, embed_mpnet=args.embed_mpnet)
    if settings.redis_url:
        jobs = JobSystem.open(settings)
        try:
            job = jobs.submit(KIND, tenant, options.to_json())
            print(job.id, flush=True)
            return _wait(jobs, job.id, tenant) if args.wait else 0
        finally:
            jobs.close()
    ownership = claim_edge_store(settings)
    rt = Runtime.open(settings)
    try:
        assert rt.jobs is not None
        options.check(rt.job_services())
        rt.jobs.start_consumer(rt.job_services(), ownership)
        job = rt.jobs.submit(KIND, tenant, options.to_json())
        return _wait(rt.jobs, job.id, tenant)
    finally:
        rt.close()


def cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from fathom.retrieval.tenancy import Tenant
    from fathom.service.jobs.versions import rollback
    from fathom.service.runtime import Runtime

    ownership = claim_edge_store(settings)
    rt = Runtime.open(settings)
    try:
        assert rt.jobs is not None
        result = rollback(rt.job_services(), rt.jobs.locks, Tenant(args.tenant), settings.jobs.lock_ttl_s)
        print(json.dumps({"live_version": result.live_version, "previous_version": result.previous_version,
                          "caught_up": {"rebuilt": result.caught_up.rebuilt, "removed": result.caught_up.removed}}))
        return 0
    finally:
        rt.close()
        if ownership is not None:
            ownership.release()


def add_job_commands(sub: Any) -> None:
    """The job subcommands, for ``fathom.service.cli.build_parser``."""
    w = sub.add_parser("worker", help="consume reindex jobs from Redis (server backend)", description=WORKER_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    w.set_defaults(fn=cmd_worker)

    r = sub.add_parser("reindex", help="rebuild a tenant's index as a new version, gated, then swap it in")
    r.add_argument("--tenant", required=True, type=tenant_arg)
    r.add_argument("--chunker", choices=["semantic", "fixed", "late"])
    r.add_argument("--max-chunk-tokens", type=int)
    r.add_argument("--bm25-k1", type=float)
    r.add_argument("--bm25-b", type=float)
    r.add_argument("--embed-mpnet", action=argparse.BooleanOptionalAction, default=None)
    r.add_argument("--wait", action="store_true", help="with Redis: wait for the job and print its outcome "
                                                        "(without Redis the job always runs here, to the end)")
    r.set_defaults(fn=cmd_reindex)

    rb = sub.add_parser("rollback", help="make a tenant's previous index version live again (needs the store)")
    rb.add_argument("--tenant", required=True, type=tenant_arg)
    rb.set_defaults(fn=cmd_rollback)
