"""Per-tenant configuration: guard thresholds and the golden query set used by the reindex gate.

Read from ``FATHOM_SERVICE__TENANTS_FILE`` (JSON)::

    {"acme": {"guard": {"min_confidence": 0.4}, "golden_set": "/etc/fathom/acme-golden.jsonl",
              "context": {"max_tokens": 1024}}}

Tenants not listed use the defaults from settings.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fathom.retrieval.guard import GuardPolicy
from fathom.service.core.config import Settings
from fathom.retrieval.tenancy import InvalidTenant, Tenant

log = logging.getLogger(__name__)


def _parse(path: Path) -> dict[str, Any]:
    """The file's tenants, each id checked like every tenant id (a full match: ``"acme\\n"`` is refused)."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a JSON object of tenant id -> settings")
    for tenant_id in data:
        try:
            Tenant(tenant_id)
        except InvalidTenant as exc:
            raise ValueError(f"{path}: {exc}") from None
    return data


@dataclass(frozen=True, slots=True)
class TenantConfig:
    guard: GuardPolicy
    golden_set: Path | None = None
    context_max_tokens: int | None = None     # the tenant's default max_context_tokens (settings.context otherwise)


class TenantDirectory:
    def __init__(self, settings: Settings):
        self._default = TenantConfig(GuardPolicy(settings.guard.min_confidence, settings.guard.min_chunk_confidence),
                                     context_max_tokens=settings.context.default_max_tokens)
        self._path = settings.service.tenants_file
        self._data: dict[str, Any] = {}
        self._mtime: float | None = None
        self._lock = threading.Lock()

        with self._lock:
            self._reload(initial=True)   # a bad file stops the process at start, not at its first request

    def _reload(self, initial: bool = False) -> None:
        if self._path is None or not self._path.exists():
            self._data = {}
            return
        mtime = self._path.stat().st_mtime
        if mtime != self._mtime:
            self._mtime = mtime
            try:
                self._data = _parse(self._path)
            except ValueError:
                if initial:
                    raise
                log.exception("tenants file %s is invalid; keeping the configuration read before", self._path)

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
        budget = (raw.get("context") or {}).get("max_tokens")
        return TenantConfig(guard, golden, int(budget) if budget else self._default.context_max_tokens)
