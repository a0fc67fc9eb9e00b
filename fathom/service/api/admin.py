"""``/v1/admin``: reindex jobs, index versions, rollback and golden sets.

Admins act on their own tenant, operators on the tenant they name in
``X-Fathom-Tenant`` (and may list every tenant's index). Jobs are only
enqueued here; a consumer thread or ``fathom worker`` runs them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Response

from fathom.retrieval.store.contract import IndexRef, StoreUnavailable
from fathom.retrieval.tenancy import Tenant
from fathom.service.api.admin_schemas import (
    GoldenQueryIn,
    GoldenSetIn,
    GoldenSetOut,
    IndexOverview,
    JudgeCalibrationOut,
    JobOut,
    ReindexRequest,
    RollbackOut,
    TenantIndexOut,
    VersionOut,
)
from fathom.service.api.deps import Caller, admin_caller, admin_or_every_tenant, runtime
from fathom.service.jobs.gate import GoldenSetInvalid, GoldenSetManaged, parse_golden
from fathom.service.jobs.model import JobsUnavailable
from fathom.service.jobs.reindex import KIND, ReindexOptions, golden_sets
from fathom.service.jobs.system import JobFinished, JobNotFound, JobSystem
from fathom.service.jobs.versions import NoPreviousVersion, TenantBusy, rollback, rollback_target
from fathom.service.problems import Problem
from fathom.service.runtime import Runtime

router = APIRouter(prefix="/v1/admin", tags=["admin"])

_JOBS_DOWN = {503: {"description": "The job queue (Redis) is unreachable (problem+json, code jobs_unavailable)"}}


def _jobs_unavailable(exc: JobsUnavailable) -> Problem:
    return Problem(503, "jobs_unavailable", "The job queue is unavailable", str(exc), headers={"Retry-After": "5"})


def _jobs(rt: Runtime) -> JobSystem:
    if rt.jobs is None:
        raise Problem(503, "jobs_unavailable", "This process runs no job system")
    return rt.jobs


def _busy(exc: TenantBusy) -> Problem:
    return Problem(409, "reindex_in_progress", "A reindex or rollback of this tenant is in progress",
                   f"job {exc.holder} holds the tenant; wait for it or cancel it", job_id=exc.holder)


@router.post("/reindex", status_code=202, response_model=JobOut, summary="Start a reindex (returns a job)",
             responses={409: {"description": "A reindex of this tenant is already queued or running"},
                        422: {"description": "Options this deployment cannot build"}, **_JOBS_DOWN})
def start_reindex(response: Response, caller: Annotated[Caller, Depends(admin_caller)],
                  rt: Annotated[Runtime, Depends(runtime)],
                  body: Annotated[ReindexRequest | None, Body()] = None) -> JobOut:
    """Rebuild the tenant's index as a new version beside the live one; queries keep using the live one.

    Before the swap the tenant's golden set (if any) is scored on both
    versions; if recall@10 drops by more than the configured margin the job
    fails with the figures and the old version stays live. Poll the job at
    ``GET /v1/admin/jobs/{id}``.
    """
    options = ReindexOptions(**(body.model_dump() if body else {}))
    try:
        options.check(rt.job_services())
    except ValueError as exc:
        raise Problem(422, "invalid_options", "Invalid reindex options", str(exc)) from None
    try:
        job = _jobs(rt).submit(KIND, caller.tenant.id, options.to_json())
    except TenantBusy as exc:
        raise _busy(exc) from None
    except JobsUnavailable as exc:
        raise _jobs_unavailable(exc) from None
    response.headers["Location"] = f"/v1/admin/jobs/{job.id}"
    return JobOut.of(job)


@router.get("/jobs/{job_id}", response_model=JobOut, summary="A job's status, progress, counts and errors",
            responses={404: {"description": "No such job for this tenant"}, **_JOBS_DOWN})
def get_job(job_id: str, caller: Annotated[Caller, Depends(admin_caller)],
            rt: Annotated[Runtime, Depends(runtime)]) -> JobOut:
    try:
        return JobOut.of(_jobs(rt).get(job_id, caller.tenant.id))
    except JobNotFound:
        raise Problem(404, "job_not_found", "Job not found", f"no job {job_id} for this tenant") from None
    except JobsUnavailable as exc:
        raise _jobs_unavailable(exc) from None


@router.post("/jobs/{job_id}/cancel", status_code=202, response_model=JobOut, summary="Cancel a job",
             responses={404: {"description": "No such job"}, 409: {"description": "The job already ended"}, **_JOBS_DOWN})
def cancel_job(job_id: str, caller: Annotated[Caller, Depends(admin_caller)],
               rt: Annotated[Runtime, Depends(runtime)]) -> JobOut:
    """A queued job is cancelled at once; a running one stops at its next checkpoint and drops what it built."""
    try:
        return JobOut.of(_jobs(rt).cancel(job_id, caller.tenant.id))
    except JobNotFound:
        raise Problem(404, "job_not_found", "Job not found", f"no job {job_id} for this tenant") from None
    except JobFinished as exc:
        raise Problem(409, "job_finished", "The job already ended", f"status {exc.job.status}",
                      job_status=exc.job.status.value) from None
    except JobsUnavailable as exc:
        raise _jobs_unavailable(exc) from None


def _tenant_index(rt: Runtime, tenant: Tenant) -> TenantIndexOut:
    live = rt.store.live_version(tenant)
    previous = rollback_target(rt.job_services(), tenant)
    versions = []
    for v in rt.store.versions(tenant):
        ref = IndexRef(tenant, v)
        state = "live" if v == live else "previous" if v == previous else "building"
        versions.append(VersionOut(version=v, state=state, points=rt.store.count(ref), size_bytes=rt.store.size_bytes(ref),
                                   layout=rt.store.layout(ref).to_json()))
    return TenantIndexOut(tenant=tenant.id, live_version=live, previous_version=previous, versions=versions,
                          documents=rt.registry.counts(tenant), judge_calibration=_calibration(rt, tenant, live))


def _calibration(rt: Runtime, tenant: Tenant, live: int | None) -> JudgeCalibrationOut | None:
    judge = rt.pipeline.judge
    if judge is None or judge.tenants is None:
        return None
    try:
        calibration = judge.tenants.get(tenant)
    except Exception as exc:       # a stored calibration the judge cannot read: say so (answers are degraded)
        return JudgeCalibrationOut(error=type(exc).__name__)
    if calibration is None:
        return None
    p = calibration.provenance
    version = p.get("index_version")
    return JudgeCalibrationOut(fitted_at=p.get("fitted_at"), golden=p.get("golden"), examples=p.get("examples", {}),
                               index_version=version, current=None if version is None else version == live)


@router.get("/index", response_model=IndexOverview, summary="Index versions and sizes per tenant")
def index_overview(caller: Annotated[Caller | None, Depends(admin_or_every_tenant)],
                   rt: Annotated[Runtime, Depends(runtime)]) -> IndexOverview:
    """The caller's tenant; an operator key without ``X-Fathom-Tenant`` sees every tenant."""
    tenants = [caller.tenant] if caller is not None else rt.store.tenants()
    try:
        return IndexOverview(tenants=[_tenant_index(rt, t) for t in tenants])
    except StoreUnavailable as exc:
        raise Problem(503, "store_unavailable", "The index store is unavailable", str(exc).split(":")[0]) from None


@router.post("/rollback", response_model=RollbackOut, summary="Make the previous index version live again",
             responses={409: {"description": "No previous version, or a reindex of this tenant is in progress"},
                        **_JOBS_DOWN})
def rollback_index(caller: Annotated[Caller, Depends(admin_caller)],
                   rt: Annotated[Runtime, Depends(runtime)]) -> RollbackOut:
    """Documents written or deleted since the previous version was replaced are replayed into it first."""
    jobs = _jobs(rt)
    try:
        result = rollback(rt.job_services(), jobs.locks, caller.tenant, jobs.settings.lock_ttl_s)
    except NoPreviousVersion as exc:
        raise Problem(409, "no_previous_version", "Nothing to roll back to", str(exc)) from None
    except TenantBusy as exc:
        raise _busy(exc) from None
    except JobsUnavailable as exc:
        raise _jobs_unavailable(exc) from None
    return RollbackOut(live_version=result.live_version, previous_version=result.previous_version,
                       caught_up={"rebuilt": result.caught_up.rebuilt, "removed": result.caught_up.removed})


@router.get("/golden-set", response_model=GoldenSetOut, summary="The tenant's golden query set (used by the gate)")
def get_golden_set(caller: Annotated[Caller, Depends(admin_caller)],
                   rt: Annotated[Runtime, Depends(runtime)]) -> GoldenSetOut:
    sets = golden_sets(rt.job_services())
    try:
        found = sets.find(caller.tenant)
    except GoldenSetInvalid as exc:
        raise Problem(422, "golden_set_invalid", "The stored golden set is invalid", str(exc)) from None
    source, queries = found if found is not None else (None, [])
    return GoldenSetOut(source=source, queries=[GoldenQueryIn(query=q.query, expected=list(q.expected)) for q in queries])


@router.put("/golden-set", response_model=GoldenSetOut, summary="Upload or replace the tenant's golden query set",
            responses={409: {"description": "The tenants file configures this tenant's golden set"}})
def put_golden_set(body: GoldenSetIn, caller: Annotated[Caller, Depends(admin_caller)],
                   rt: Annotated[Runtime, Depends(runtime)]) -> GoldenSetOut:
    """Queries with the ids of the documents they must find; the next reindex is gated on them."""
    sets = golden_sets(rt.job_services())
    if len(body.queries) > sets.max_queries:
        raise Problem(422, "golden_set_invalid", "Golden set too large", f"at most {sets.max_queries} queries")
    try:
        # The reader's own rules, so an accepted set always loads again (schemathesis found blank queries stored).
        queries = parse_golden([q.model_dump() for q in body.queries], sets.max_queries)
    except GoldenSetInvalid as exc:
        raise Problem(422, "golden_set_invalid", "Invalid golden set", str(exc)) from None
    try:
        sets.save(caller.tenant, queries)
    except GoldenSetManaged as exc:
        raise Problem(409, "golden_set_configured", "The golden set is managed in the tenants file", str(exc)) from None
    return GoldenSetOut(source="uploaded", queries=body.queries)
