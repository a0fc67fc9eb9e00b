"""API keys → (tenant, role). The tenant is never taken from a request body.

Keys are stored as SHA-256 hashes only, in a JSON file (``FATHOM_SERVICE__API_KEYS_FILE``)
and/or an env var (``FATHOM_SERVICE__API_KEYS``), both shaped like::

    {"keys": [{"id": "web-app", "sha256": "<hex>", "tenant": "acme", "role": "app"}]}

The file is re-read when it changes, so keys are rotated by editing it (add
the new key, roll clients, remove the old one) without a restart.

Roles: ``app`` may retrieve; ``admin`` may also ingest, delete and reindex for
its own tenant; ``operator`` may act on any tenant, which it names with the
``X-Fathom-Tenant`` header (the only way a tenant is ever chosen per request).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from fathom.retrieval.tenancy import InvalidTenant, Tenant

TENANT_HEADER = "X-Fathom-Tenant"


class Role(StrEnum):
    APP = "app"
    ADMIN = "admin"
    OPERATOR = "operator"


_RANK = {Role.APP: 0, Role.ADMIN: 1, Role.OPERATOR: 2}


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    role: Role
    tenant: Tenant | None      # None only for operators

    def allows(self, role: Role) -> bool:
        return _RANK[self.role] >= _RANK[role]


class AuthError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> str:
    return "fth_" + secrets.token_urlsafe(32)


def _parse_entries(data: Any, origin: str) -> dict[str, Principal]:
    entries = data.get("keys", []) if isinstance(data, dict) else data
    out: dict[str, Principal] = {}
    for i, e in enumerate(entries or []):
        try:
            digest = str(e["sha256"]).lower()
            if len(digest) != 64:
                raise ValueError("sha256 must be 64 hex chars")
            role = Role(e["role"])
            tenant = Tenant(e["tenant"]) if e.get("tenant") else None
            if tenant is None and role is not Role.OPERATOR:
                raise ValueError("only operator keys may omit the tenant")
        except (KeyError, ValueError, InvalidTenant, TypeError) as exc:
            raise ValueError(f"{origin}: key entry {i} is invalid: {exc}") from exc
        out[digest] = Principal(key_id=str(e.get("id") or digest[:8]), role=role, tenant=tenant)
    return out


class KeyStore:
    def __init__(self, path: Path | None = None, env_json: str | None = None):
        self.path = path
        self._env = _parse_entries(json.loads(env_json), "FATHOM_SERVICE__API_KEYS") if env_json else {}
        self._file: dict[str, Principal] = {}
        self._mtime: float | None = None
        self._lock = threading.Lock()
        self._reload()

    def _reload(self) -> None:
        if self.path is None or not self.path.exists():
            self._file, self._mtime = {}, None
            return
        mtime = self.path.stat().st_mtime
        if mtime != self._mtime:
            self._file = _parse_entries(json.loads(self.path.read_text()), str(self.path))
            self._mtime = mtime

    def lookup(self, key: str) -> Principal | None:
        digest = hash_key(key)
        with self._lock:
            self._reload()
            for table in (self._env, self._file):
                for known, principal in table.items():
                    if hmac.compare_digest(known, digest):
                        return principal
        return None

    def authenticate(self, key: str | None, tenant_header: str | None) -> tuple[Principal, Tenant]:
        """The caller and the tenant the request acts on, or an AuthError."""
        if not key:
            raise AuthError(401, "unauthenticated", "missing API key (Authorization: Bearer <key> or X-API-Key)")
        principal = self.lookup(key)
        if principal is None:
            raise AuthError(401, "unauthenticated", "unknown API key")
        if principal.role is Role.OPERATOR:
            if not tenant_header:
                raise AuthError(400, "tenant_required", f"operator keys must name a tenant in {TENANT_HEADER}")
            try:
                return principal, Tenant(tenant_header)
            except InvalidTenant as exc:
                raise AuthError(400, "invalid_tenant", str(exc)) from exc
        assert principal.tenant is not None
        if tenant_header and tenant_header != principal.tenant.id:
            raise AuthError(403, "forbidden_tenant", "this key cannot act on another tenant")
        return principal, principal.tenant


def add_key(path: Path, *, tenant: str | None, role: str, key_id: str | None = None) -> str:
    """Create a key, store its hash in ``path`` (created if missing) and return the plaintext once."""
    key = generate_key()
    data = json.loads(path.read_text()) if path.exists() else {"keys": []}
    entry = {"id": key_id or f"{tenant or 'operator'}-{role}-{len(data['keys']) + 1}", "sha256": hash_key(key),
             "tenant": tenant, "role": role}
    _parse_entries([entry], "new key")   # validate before writing
    data["keys"].append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
    return key
