"""``fathom store init``: create the Qdrant layout the service needs, idempotently.

It is what the Helm bootstrap job runs (``helm/fathom/templates/job-store-init.yaml``)
and it goes through the same code the service uses: the store adapter from
settings (``fathom.retrieval.components.open_store``: shard number, replication factor,
write consistency, read consistency, write ordering, retries) and the ingest
pipeline's :meth:`~fathom.ingest.ingest_pipeline.IngestPipeline.ensure_index`, which is
where a tenant's first ingest creates its first version. Per tenant that is a
collection ``<prefix>__<tenant>__v1`` with the dense vector, the sparse BM25
vector with the IDF modifier, the ``tenant_id`` keyword index with
``is_tenant=true`` and ``document_id`` index, and the alias ``<prefix>__<tenant>__live``
that blue/green reindexing swaps. Running it again changes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from fathom.service.core.config import Settings
from fathom.retrieval.store.contract import StoreUnavailable, VectorStore
from fathom.retrieval.tenancy import Tenant, tenant_arg


def wait_until_ready(store: VectorStore, wait_s: float, *, interval_s: float = 2.0) -> None:
    """Ping until the store answers or ``wait_s`` passes (a fresh cluster's pods start after the hook job)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            store.ping()
            return
        except StoreUnavailable:
            if time.monotonic() >= deadline:
                raise
            print(f"store not reachable yet; retrying in {interval_s:g}s", file=sys.stderr)
            time.sleep(interval_s)


def init_store(settings: Settings, tenants: list[str] | None = None, *, wait_s: float = 0.0,
               store: VectorStore | None = None) -> dict[str, Any]:
    """Ensure every tenant (given, else those in the tenants file) has a live index; report each one's layout."""
    from fathom.ingest.wiring import build_ingest
    from fathom.ingest.registry import Registry
    from fathom.retrieval.components import load_models, open_store
    from fathom.service.tenants import TenantDirectory

    own = store is None
    store = store or open_store(settings)
    try:
        wait_until_ready(store, wait_s)
        names = [Tenant(t) for t in tenants] if tenants else TenantDirectory(settings).configured()
        report: dict[str, Any] = {"backend": settings.store.backend, "tenants": {}}
        if not names:
            report["note"] = "store reachable; no tenants given or configured, nothing to create"
            return report
        models = load_models(settings)   # the layout records the embedders' sizes and names
        settings.state_path.mkdir(parents=True, exist_ok=True)   # the default (SQLite) registry lives there
        registry = Registry(settings.registry)
        try:
            pipeline = build_ingest(settings, store, registry, models)
            for tenant in names:
                ref, created = pipeline.ensure_index(tenant)
                report["tenants"][tenant.id] = {"version": ref.version, "created": created,
                                                "layout": store.describe(ref)}
        finally:
            registry.close()
        return report
    finally:
        if own:
            store.close()


def cmd_store_init(args: argparse.Namespace, settings: Settings) -> int:
    try:
        report = init_store(settings, args.tenant or None, wait_s=args.wait)
    except StoreUnavailable as exc:
        print(f"fathom: store unavailable: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(report, indent=2, default=str))
    return 0


def add_store_commands(sub: Any) -> None:
    store = sub.add_parser("store", help="vector store layout").add_subparsers(dest="sub", required=True)
    init = store.add_parser("init", help="create each tenant's collection, indexes and alias (idempotent)")
    init.add_argument("--tenant", type=tenant_arg, action="append", default=[], help="repeatable; default: the tenants file's tenants")
    init.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                      help="keep retrying an unreachable store this long (the Helm hook job uses 300)")
    init.set_defaults(fn=cmd_store_init)
