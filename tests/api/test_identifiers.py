"""Identifiers are full-match validated everywhere; one tag-key grammar for ingest and filters; /metrics token.

Before the fix: ``Tenant("acme\\n")`` passed (``$`` matches before a final newline) through the keys file, the
keys env var, the tenants file and ``--tenant``; document ids with U+0085, U+202E, U+200B or fullwidth
dots were stored; a tag key with ``.`` was accepted at ingest though ``tags.a.b`` can never be filtered;
``/metrics`` answered anyone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fathom.retrieval.tenancy import InvalidTenant, Tenant
from fathom.service.auth import KeyStore, hash_key
from fathom.service.tenants import TenantDirectory
from tests.hardening_support import assert_problem, serving
from tests.support import Keys, client

REPO = Path(__file__).resolve().parents[2]  # the repository root
BAD_TENANTS = ["acme\n", "acme\r\n", "acme\n\n", " acme", "acme ", "ac\nme", "\nacme"]


@pytest.mark.parametrize("bad", BAD_TENANTS)
def test_tenant_ids_are_full_matched(bad):
    with pytest.raises(InvalidTenant):
        Tenant(bad)
    assert Tenant("acme").id == "acme"


@pytest.mark.parametrize("bad", BAD_TENANTS[:3])
def test_keys_file_env_and_tenants_file_refuse_a_trailing_newline(tmp_path, base_settings, bad):
    entry = {"keys": [{"id": "k", "sha256": hash_key("secret"), "tenant": bad, "role": "admin"}]}
    with pytest.raises(ValueError, match="invalid tenant"):
        KeyStore(None, json.dumps(entry))
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps(entry))
    with pytest.raises(ValueError, match="invalid tenant"):
        KeyStore(keys_file)
    tenants_file = tmp_path / "tenants.json"
    tenants_file.write_text(json.dumps({bad: {"guard": {"min_confidence": 0.1}}}))
    settings = base_settings.model_copy(update={"service": base_settings.service.model_copy(
        update={"tenants_file": tenants_file})})
    with pytest.raises(ValueError, match="invalid tenant"):
        TenantDirectory(settings)


@pytest.mark.parametrize("argv", [["keys", "create", "--role", "admin"], ["reindex"], ["rollback"],
                                  ["store", "init"], ["ingest", "README.md"]])
def test_the_cli_refuses_a_tenant_with_a_trailing_newline(tmp_path, argv):
    env = {**os.environ, "FATHOM_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "fathom.service.cli", *argv, "--tenant", "acme\n",
                        *(["--file", str(tmp_path / "k.json")] if argv[0] == "keys" else [])],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "invalid tenant id" in r.stderr, (r.returncode, r.stderr[-500:])
    assert not (tmp_path / "k.json").exists() and not (tmp_path / "state").exists()


BAD_IDS = ["a\u0085b", "a\u202eb.txt", "a\u200bb", "a\u2028b", "\ufeffdoc", "x\u3164y", "\uff0e\uff0e/etc/passwd",
           "..\uff0fetc\uff0fpasswd", "a\uff3cb", "a\u2215b", "reports\u2044q3", "a\u0000b", "a\nb", "a\u009bb",
           "\U000e0041tag"]
GOOD_IDS = ["reports/2024/q3.pdf", "café.md", "Draft\u2026 final.docx", "日本語/ドキュメント.txt", "a b (1).txt"]


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys().add_tenants(["ids"])


@pytest.fixture(scope="module")
def served(tmp_path_factory, base_settings, models_ready, keys):
    with serving(base_settings, tmp_path_factory.mktemp("hardening-ids"), keys,
                 service={"api_keys": keys.json(), "api_keys_file": None, "metrics_token": "scrape-me"}) as (url, rt):
        yield url, rt


def test_document_ids_refuse_controls_format_characters_and_lookalike_separators(served, keys):
    url, _ = served
    docs = [{"id": i, "text": f"Document number {n} about the quarterly report."} for n, i in enumerate(BAD_IDS + GOOD_IDS)]
    with client(url) as c:
        r = c.post("/v1/documents", json={"documents": docs}, headers=keys.headers("ids-admin"))
        assert r.status_code == 207, r.text
        outcomes = {o["id"]: o for o in r.json()["documents"]}
        for bad in BAD_IDS:
            assert outcomes[bad]["status"] == "failed" and outcomes[bad]["reason"] == "invalid_document_id", outcomes[bad]
        for good in GOOD_IDS:
            assert outcomes[good]["status"] == "ok", outcomes[good]
        listed = {d["id"] for d in c.get("/v1/documents", headers=keys.headers("ids-admin")).json()["documents"]}
    assert listed == set(GOOD_IDS)


def test_an_uploaded_file_name_loses_its_format_characters(served, keys):
    url, _ = served
    with client(url) as c:
        r = c.post("/v1/documents", files=[("files", ("report\u202etxt.exe\u200b.txt", b"An uploaded plain text file."))],
                   data={"document_ids": "upload-1"}, headers=keys.headers("ids-admin"))
        assert r.status_code == 200, r.text
        (doc,) = [d for d in c.get("/v1/documents", headers=keys.headers("ids-admin")).json()["documents"]
                  if d["id"] == "upload-1"]
    assert doc["source_name"] == "reporttxt.exe.txt"


@pytest.mark.parametrize("tags", [{"a.b": "x"}, {"team.name": "hr"}, {"Team": "x"}, {"a\n": "x"}, {"": "x"}])
def test_tag_keys_follow_the_filter_grammar_at_ingest(served, keys, tags):
    url, _ = served
    with client(url) as c:
        r = c.post("/v1/documents", json={"documents": [{"id": "tagged", "text": "Some text to tag, long enough to ingest.", "tags": tags}]},
                   headers=keys.headers("ids-admin"))
        assert_problem(r, 422, "validation_error")
        r = c.post("/v1/documents", files=[("files", ("t.txt", b"Some text to tag, long enough to ingest."))], data={"tags": json.dumps(tags)},
                   headers=keys.headers("ids-admin"))
        assert_problem(r, 422, "invalid_tags")


def test_every_accepted_tag_key_can_be_filtered_on(served, keys):
    url, _ = served
    with client(url) as c:
        r = c.post("/v1/documents", json={"documents": [{"id": "tagged-ok", "text": "The travel policy for trains.",
                                                          "tags": {"team_name-2": "hr"}}]},
                   headers=keys.headers("ids-admin"))
        assert r.status_code == 200, r.text
        r = c.post("/v1/retrieve", json={"query": "travel policy", "mode": "bm25", "filters": {"tags.team_name-2": "hr"}},
                   headers=keys.headers("ids-app"))
        assert r.status_code == 200 and [ch["document_id"] for ch in r.json()["chunks"]] == ["tagged-ok"], r.text


def test_metrics_token(served, keys):
    url, _ = served
    with client(url) as c:
        c.post("/v1/retrieve", json={"query": "travel policy"}, headers=keys.headers("ids-app"))
        assert_problem(c.get("/metrics"), 401, "unauthenticated")
        assert_problem(c.get("/metrics", headers={"Authorization": "Bearer wrong"}), 401, "unauthenticated")
        r = c.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert r.status_code == 200 and 'tenant="ids"' in r.text
        # What names a tenant: only these two series, as documented in fathom/service/api/metrics_route.py.
        assert {line.split("{")[0] for line in r.text.splitlines() if 'tenant="ids"' in line} <= {
            "fathom_guard_outcomes_total", "fathom_guard_outcomes_created", "fathom_rate_limited_total",
            "fathom_rate_limited_created"}
