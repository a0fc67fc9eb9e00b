"""Per-tenant files kept in the document registry, so that every process sharing it sees the same ones.

An API replica, a worker and a CLI run each have their own state dir (on
Kubernetes a pod's ``emptyDir``), but they share the registry (PostgreSQL
there). What one process writes for a tenant and another must read lives
here: the judge's tenant calibration (written by ``fathom judge calibrate``
and by a reindex, read by every API process's judge) and the golden set an
admin uploads (read by whichever process runs the reindex gate). Tenant-scoped
like every registry read.
"""

from __future__ import annotations

from pathlib import Path

from fathom.ingest.registry import Registry
from fathom.retrieval.judge.calibration import CalibrationFiles, TenantCalibrations
from fathom.retrieval.tenancy import Tenant

JUDGE_CALIBRATION = "judge_calibration"
GOLDEN_SET = "golden_set"
# How long a process serves the calibration it read before asking the registry again: the delay after which a
# calibration written by another process is served everywhere (one small query per tenant per interval).
CALIBRATION_RECHECK_S = 5.0


class RegistryCalibrations:
    """``CalibrationStore`` (``fathom.retrieval.judge.calibration``) over the registry.

    ``legacy``: the state dir's ``judge/`` folder, where calibrations were kept before; a tenant with no
    calibration in the registry is read from there, so an upgrade serves what was fitted before it.
    """

    def __init__(self, registry: Registry, legacy: Path | None = None):
        self.registry = registry
        self.legacy = CalibrationFiles(legacy) if legacy is not None else None

    def stamp(self, tenant: Tenant) -> str | None:
        stamp = self.registry.file_stamp(tenant, JUDGE_CALIBRATION)
        if stamp is None and self.legacy is not None:
            return self.legacy.stamp(tenant)
        return stamp

    def read(self, tenant: Tenant) -> tuple[str, str] | None:
        found = self.registry.read_file(tenant, JUDGE_CALIBRATION)
        if found is None and self.legacy is not None:
            return self.legacy.read(tenant)
        return found

    def write(self, tenant: Tenant, text: str) -> None:
        self.registry.write_file(tenant, JUDGE_CALIBRATION, text)

    def delete(self, tenant: Tenant) -> bool:
        old = self.legacy.delete(tenant) if self.legacy is not None else False
        return self.registry.delete_file(tenant, JUDGE_CALIBRATION) or old


def registry_calibrations(registry: Registry, legacy: Path | None = None) -> TenantCalibrations:
    """The tenants' judge calibrations as every service process reads and writes them."""
    return TenantCalibrations(RegistryCalibrations(registry, legacy), recheck_s=CALIBRATION_RECHECK_S)
