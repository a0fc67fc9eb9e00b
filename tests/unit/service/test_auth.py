"""API keys (fathom/service/auth.py) as a unit: hashes only, the tenant from the key, roles, rotation.

Real key files in a temporary folder; the HTTP side (401/403 problems, WWW-Authenticate) is in
tests/api/test_documents_api.py and tests/api/test_bad_input.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fathom.retrieval.tenancy import Tenant
from fathom.service.auth import AuthError, KeyStore, Role, add_key, hash_key


def entries(*rows: tuple[str, str | None, str]) -> str:
    return json.dumps({"keys": [{"id": f"k{i}", "sha256": hash_key(key), "tenant": tenant, "role": role}
                                for i, (key, tenant, role) in enumerate(rows)]})


def test_a_key_names_its_tenant_and_a_header_may_not_change_it() -> None:
    store = KeyStore(env_json=entries(("app-key", "acme", "app")))
    principal, tenant = store.authenticate("app-key", None)
    assert tenant == Tenant("acme") and principal.role is Role.APP
    assert store.authenticate("app-key", "acme")[1] == Tenant("acme")
    with pytest.raises(AuthError) as refused:
        store.authenticate("app-key", "globex")
    assert (refused.value.status, refused.value.code) == (403, "forbidden_tenant")


@pytest.mark.parametrize("key, header, status, code", [
    (None, None, 401, "unauthenticated"), ("", None, 401, "unauthenticated"), ("nope", None, 401, "unauthenticated"),
    ("op-key", None, 400, "tenant_required"), ("op-key", "Not A Tenant!", 400, "invalid_tenant"),
])
def test_refusals_say_why(key: str | None, header: str | None, status: int, code: str) -> None:
    store = KeyStore(env_json=entries(("op-key", None, "operator")))
    with pytest.raises(AuthError) as refused:
        store.authenticate(key, header)
    assert (refused.value.status, refused.value.code) == (status, code)


def test_operators_act_on_the_tenant_they_name() -> None:
    store = KeyStore(env_json=entries(("op-key", None, "operator")))
    principal, tenant = store.authenticate("op-key", "globex")
    assert principal.tenant is None and tenant == Tenant("globex")
    assert principal.allows(Role.ADMIN) and principal.allows(Role.APP)
    app = KeyStore(env_json=entries(("a", "acme", "app"))).lookup("a")
    assert app is not None and not app.allows(Role.ADMIN)


def test_only_hashes_are_stored_and_a_bad_entry_is_refused_at_load(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key = add_key(path, tenant="acme", role="admin")
    assert key not in path.read_text() and hash_key(key) in path.read_text()
    with pytest.raises(ValueError, match="only operator keys"):
        KeyStore(env_json=json.dumps({"keys": [{"sha256": "0" * 64, "tenant": None, "role": "app"}]}))
    with pytest.raises(ValueError):
        add_key(path, tenant=None, role="admin")             # validated before anything is written
    assert len(json.loads(path.read_text())["keys"]) == 1


def test_keys_rotate_by_editing_the_file_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    old = add_key(path, tenant="acme", role="app")
    store = KeyStore(path)
    assert store.lookup(old) is not None
    new = add_key(path, tenant="acme", role="app")
    data = json.loads(path.read_text())
    data["keys"] = [e for e in data["keys"] if e["sha256"] != hash_key(old)]
    path.write_text(json.dumps(data))
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 5))   # a coarse-mtime filesystem still sees it
    assert store.lookup(new) is not None and store.lookup(old) is None
