"""``fathom judge calibrate --tenant T``: fit the relevance judge to a tenant's own corpus from its golden set.

Every golden query is asked twice through the tenant's real pipeline, as it is
and with its expected documents excluded from the search (so it becomes an
on-topic question this corpus cannot answer), and the judge's default model is
recalibrated on what it saw (``fathom/retrieval/judge/fit.py``). No negatives
need labelling. The result goes to the document registry, which every API
process reads (within ``tenant_files.CALIBRATION_RECHECK_S`` seconds);
``--delete`` goes back to the default. Cost: two queries per golden query (a few seconds for 150).

With the embedded store the command needs the store to itself (stop the API
first, as for ``fathom reindex``); with Redis, cached answers of the tenant are
invalidated (their confidences came from the old calibration).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fathom.service.core.config import Settings


def cmd_judge_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    from fathom.ingest.registry import Registry
    from fathom.ingest.tenant_files import registry_calibrations
    from fathom.retrieval.components import build_pipeline, load_models, open_store
    from fathom.retrieval.judge.fit import CalibrationError, calibrate_tenant
    from fathom.retrieval.tenancy import Tenant
    from fathom.service.job_commands import claim_edge_store as _claim_edge
    from fathom.service.jobs.gate import GoldenSets, read_golden
    from fathom.service.serving import build_serving

    tenant = Tenant(args.tenant)
    registry = Registry(settings.registry)
    try:
        calibrations = registry_calibrations(registry, settings.judge_calibration_dir)
        if args.delete:
            print(json.dumps({"tenant": tenant.id, "deleted": calibrations.delete(tenant)}))
            _invalidate(build_serving(settings), tenant)
            return 0
        golden = (read_golden(Path(args.golden), settings.jobs.golden_max_queries) if args.golden else
                  GoldenSets.of(settings, registry).load(tenant))
        if not golden:
            print(f"fathom: tenant {tenant.id} has no golden set; pass --golden PATH (JSONL of "
                  '{"query": ..., "expected": [document ids]})', file=sys.stderr)
            return 2
        ownership = _claim_edge(settings)
        store = open_store(settings)
        try:
            live = store.live_version(tenant)
            if live is None:
                print(f"fathom: tenant {tenant.id} has no live index", file=sys.stderr)
                return 2
            pipeline = build_pipeline(settings, store, load_models(settings, with_rerank=settings.rerank.kind == "mpnet"),
                                      calibrations=calibrations)
            if pipeline.judge is None:
                print("fathom: the relevance judge is disabled (FATHOM_JUDGE__ENABLED=false)", file=sys.stderr)
                return 2
            try:
                calibration = calibrate_tenant(pipeline, tenant, [(g.query, g.expected) for g in golden],
                                               provenance={"golden": args.golden or "configured",
                                                           "index_version": live})
            except CalibrationError as exc:
                print(f"fathom: {exc}", file=sys.stderr)
                return 2
        finally:
            store.close()
            if ownership is not None:
                ownership.release()
        calibrations.save(tenant, calibration)
    finally:
        registry.close()
    _invalidate(build_serving(settings), tenant)
    print(json.dumps({"tenant": tenant.id, "stored": "registry", **calibration.provenance}, indent=2))
    return 0


def _invalidate(serving: Any, tenant: Any) -> None:
    """Cached answers carry the old calibration's confidences (an in-process cache ends with its API process)."""
    serving.generations.bump(tenant)


def add_judge_commands(groups: Any) -> None:
    judge = groups.group("judge", "the relevance judge: fit its default, calibrate a tenant")
    cal = judge.add_parser("calibrate", help="fit the judge to a tenant's corpus from its golden set")
    cal.add_argument("--tenant", required=True)
    cal.add_argument("--golden", help="golden set JSONL (default: the tenant's configured or uploaded one)")
    cal.add_argument("--delete", action="store_true", help="remove the tenant's calibration (back to the default)")
    cal.set_defaults(fn=cmd_judge_calibrate)
