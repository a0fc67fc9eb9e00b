"""Per-tenant configuration: guard thresholds and the golden query set used by the reindex gate.

Read from ``FATHOM_SERVICE__TENANTS_FILE`` (JSON)::

    {"acme": {"guard": {"min_confidence": 0.4}, "golden_set": "/etc/fathom/acme-golden.jsonl"}}

Tenants not listed use the defaults from settings.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fathom.retrieval.guard import GuardPolicy
from fathom.service.core.config import Settings
from fathom.retrieval.tenancy import Tenant


@dataclass(frozen=True, slots=True)
class TenantConfig:
    guard: GuardPolicy
    golden_set: Path | None = None


class TenantDirectory:
    def __init__(self, settings: Settings):
        self._default = TenantConfig(GuardPolicy(settings.guard.min_confidence, settings.guard.min_chunk_confidence))
        self._path = settings.service.tenants_file
        self._data: dict[str, Any] = {}
        self._mtime: float | None = None
        self._lock = threading.Lock()

    def _reload(self) -> None:
        if self._path is None or not self._path.exists():
            self._data = {}
            return
        mtime = self._path.stat().st_mtime
        if mtime != self._mtime:
            self._data = json.loads(self._path.read_text())
            self._mtime = mtime

    def configured(self) -> list[Tenant]:
        """The tenants named in the tenants file (``fathom store init`` pre-creates their indexes)."""
        with self._lock:
            self._reload()
            return [Tenant(t) for t in sorted(self._data)]

    def get(self, tenant: Tenant) -> TenantConfig:
        with self._lock:
            self._reload()
            raw = self._data.get(tenant.id)
        if not raw:
            return self._default
        guard = replace(self._default.guard, **{k: float(v) for k, v in (raw.get("guard") or {}).items()
                                                if k in ("min_confidence", "min_chunk_confidence")})
        golden = Path(raw["golden_set"]) if raw.get("golden_set") else None
        return TenantConfig(guard, golden)
