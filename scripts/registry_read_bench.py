"""Time the registry read context assembly makes (``Registry.stored_elements``, 12 random documents a call).

Run it against a kept bench index, once per checkout, alternately (``PYTHONPATH`` picks the checkout)::

    .venv/bin/python scripts/registry_read_bench.py .fathom/bench-idx/scifact/state/registry.db \\
        bench-scifact-corpus-late

Prints the min and median over 5 rounds of 500 calls, in ms per call.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import sqlalchemy as sa

from fathom.ingest.registry import Registry, documents
from fathom.retrieval.tenancy import Tenant


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("registry", type=Path, help="an SQLite registry file")
    ap.add_argument("tenant")
    ap.add_argument("--documents", type=int, default=12)
    args = ap.parse_args()
    registry = Registry(f"sqlite:///{args.registry.resolve()}")
    tenant = Tenant(args.tenant)
    try:
        with registry.engine.connect() as c:
            ids = [r[0] for r in c.execute(sa.select(documents.c.document_id).where(documents.c.tenant == tenant.id))]
        rng = random.Random(0)
        calls = [rng.sample(ids, args.documents) for _ in range(500)]
        registry.stored_elements(tenant, calls[0])
        rounds = []
        for _ in range(5):
            t0 = time.perf_counter()
            for wanted in calls:
                registry.stored_elements(tenant, wanted)
            rounds.append((time.perf_counter() - t0) / len(calls) * 1000)
        rounds.sort()
        print(f"stored_elements, {args.documents} documents: min {rounds[0]:.3f} ms, median {rounds[2]:.3f} ms")
    finally:
        registry.close()


if __name__ == "__main__":
    main()
