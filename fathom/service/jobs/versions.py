"""Index versions around a swap: catching a version up with the registry, pruning, rollback, orphan sweeps.

Invariants:

* the live version changes only in ``store.activate`` (manifest or alias
  swap), always under the tenant's write lock and right after a final
  catch-up, so no write can fall between the two;
* the version a swap replaced is kept, with the change sequence it is
  complete up to (``Registry.retire_version``): a rollback replays the
  changes since then into it before it goes live again. Older versions are
  dropped;
* a version that is neither live nor retired is being built, or is the
  leftover of a build that died; :func:`sweep_orphans` drops those when no
  job holds the tenant.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from fathom.retrieval.store.contract import IndexRef
from fathom.retrieval.tenancy import Tenant
from fathom.service.jobs.locks import TenantLocks
from fathom.service.jobs.services import JobServices


CATCH_UP_BATCH = 64


@dataclass(slots=True)
class CatchUp:
    rebuilt: int = 0
    removed: int = 0
    without_chunks: list[str] = field(default_factory=list)   # rebuilt, but the version's chunker produced nothing


def catch_up(rt: JobServices, target: IndexRef, since: int, tally: CatchUp,
             checkpoint: Callable[[], None] = lambda: None) -> int:
    """Apply registry changes made after ``since`` to ``target``; returns the new watermark.

    A changed document is rebuilt from its registry row, a deleted (or now
    failed) one is removed: the registry is the truth, whatever happened in
    between.
    """
    ids, seq = rt.registry.changed_since(target.tenant, since)
    for i in range(0, len(ids), CATCH_UP_BATCH):
        checkpoint()
        part = ids[i:i + CATCH_UP_BATCH]
        docs = rt.registry.with_elements(target.tenant, part)
        if docs:
            report = rt.ingest.rebuild_batch(target, docs)
            tally.rebuilt += report.documents
            tally.without_chunks += report.without_chunks
        present = {rec.document_id for rec, _ in docs}
        for document_id in part:
            if document_id not in present:
                rt.store.delete_document(target, document_id)
                tally.removed += 1
    return seq


def activate(rt: JobServices, target: IndexRef, since: int, tally: CatchUp,
             before_swap: Callable[[], None] = lambda: None) -> int | None:
    """Final catch-up and swap under the tenant's write lock; the replaced version is recorded as retired.

    ``before_swap`` runs under the lock, last: a job checks there that it was
    not cancelled and still holds its tenant. Returns the replaced version.
    """
    tenant = target.tenant
    with rt.ingest.tenant_lock(tenant):
        seq = catch_up(rt, target, since, tally)
        before_swap()
        previous = rt.store.activate(target)
        rt.registry.swap_chunk_counts(tenant, target.version, previous)   # chunk_count describes the live version
        rt.registry.forget_version(tenant, target.version)
        if previous is not None and previous != target.version:
            rt.registry.retire_version(tenant, previous, seq)
    rt.generations.bump(tenant)   # a rollback returns to a version whose old answers may still be cached
    return previous


def prune(rt: JobServices, tenant: Tenant) -> list[int]:
    """Drop every version but the live one and the retired one a rollback would return to."""
    live = rt.store.live_version(tenant)
    keep = {live, rollback_target(rt, tenant)}
    dropped = []
    for version in rt.store.versions(tenant):
        if version not in keep:
            rt.store.drop_index(IndexRef(tenant, version))
            rt.registry.forget_version(tenant, version)
            dropped.append(version)
    return dropped


def rollback_target(rt: JobServices, tenant: Tenant) -> int | None:
    """The most recently retired version that still exists (the previous live one)."""
    live = rt.store.live_version(tenant)
    existing = set(rt.store.versions(tenant))
    retired = [v for v in rt.registry.retired(tenant) if v in existing and v != live]
    return max(retired, default=None)


class NoPreviousVersion(LookupError):
    pass


SWEEP_OWNER = "sweep-"     # lock-owner prefix of an orphan sweep: held for a moment, never for a job's length


class TenantBusy(RuntimeError):
    def __init__(self, holder: str):
        super().__init__(f"tenant is locked by job {holder}")
        self.holder = holder


@dataclass(frozen=True, slots=True)
class RollbackResult:
    live_version: int
    previous_version: int | None
    caught_up: CatchUp


def rollback(rt: JobServices, locks: TenantLocks, tenant: Tenant, lock_ttl_s: float) -> RollbackResult:
    """Make the previous version live again, after replaying into it the writes made since it was retired.

    Takes the tenant's reindex lock (a rollback and a reindex must not
    interleave) and the write lock for the final catch-up and swap.
    """
    owner = f"rollback-{uuid.uuid4().hex}"
    if not locks.acquire(tenant.id, owner, lock_ttl_s):
        raise TenantBusy(locks.holder(tenant.id) or "?")

    def keep_lock() -> None:
        if not locks.refresh(tenant.id, owner, lock_ttl_s):
            raise TenantBusy(locks.holder(tenant.id) or "?")

    try:
        version = rollback_target(rt, tenant)
        if version is None:
            raise NoPreviousVersion(f"tenant {tenant} has no previous index version to roll back to")
        target = IndexRef(tenant, version)
        tally = CatchUp()
        since = catch_up(rt, target, rt.registry.retired(tenant)[version], tally, keep_lock)
        previous = activate(rt, target, since, tally, before_swap=keep_lock)
        return RollbackResult(version, previous, tally)
    finally:
        locks.release(tenant.id, owner)


def sweep_orphans(rt: JobServices, locks: TenantLocks) -> dict[str, list[int]]:
    """Drop half-built versions left by builds that died, for tenants no job holds right now."""
    dropped: dict[str, list[int]] = {}
    for tenant in rt.store.tenants():
        owner = f"{SWEEP_OWNER}{uuid.uuid4().hex}"
        if not locks.acquire(tenant.id, owner, 60.0):
            continue
        try:
            gone = prune(rt, tenant)
            if gone:
                dropped[tenant.id] = gone
        finally:
            locks.release(tenant.id, owner)
    return dropped
