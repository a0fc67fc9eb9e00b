"""Request bodies are strict: JSON types must be the declared ones (pydantic strict mode), 422 problem+json.

Before the fix ``"top_k": true`` and ``"top_k": "5"`` were taken as numbers and ``"rerank": "yes"`` as true.
"""

from __future__ import annotations

import pytest

from fathom.service.app import create_app
from tests.hardening_support import assert_problem, serving
from tests.support import Keys, client

CASES = [
    ("POST", "/v1/retrieve", "app", {"query": "bees", "top_k": True}),
    ("POST", "/v1/retrieve", "app", {"query": "bees", "top_k": "5"}),
    ("POST", "/v1/retrieve", "app", {"query": "bees", "top_k": 5.0}),
    ("POST", "/v1/retrieve", "app", {"query": "bees", "rerank": "yes"}),
    ("POST", "/v1/retrieve", "app", {"query": "bees", "rerank": 1}),
    ("POST", "/v1/retrieve", "app", {"query": 5}),
    ("POST", "/v1/retrieve", "app", {"query": "bees", "filters": {"page": "3.0", "tags.x": 1.5}}),
    ("POST", "/v1/documents", "admin", {"documents": [{"id": 7, "text": "A text long enough to be ingested."}]}),
    ("POST", "/v1/documents", "admin", {"documents": [{"id": "a", "text": "A text long enough.", "title": 3}]}),
    ("POST", "/v1/admin/reindex", "admin", {"max_chunk_tokens": "128"}),
    ("POST", "/v1/admin/reindex", "admin", {"embed_mpnet": "false"}),
    ("POST", "/v1/admin/reindex", "admin", {"max_chunk_tokens": True}),
    ("PUT", "/v1/admin/golden-set", "admin", {"queries": [{"query": "bees", "expected": [1]}]}),
]


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys().add_tenants(["strict"])


@pytest.fixture(scope="module")
def url(tmp_path_factory, base_settings, models_ready, keys):
    with serving(base_settings, tmp_path_factory.mktemp("hardening-strict"), keys) as (base, _):
        with client(base) as c:
            r = c.post("/v1/documents", json={"documents": [{"id": "bees", "text": "Honeybees dance to tell where "
                                                                                   "flowers are."}]},
                       headers=keys.headers("strict-admin"))
            assert r.status_code == 200, r.text
        yield base


@pytest.mark.parametrize("method,path,who,body", CASES, ids=[f"{c[1]}:{list(c[3].items())[0]}" for c in CASES])
def test_coercible_values_are_422(url, keys, method, path, who, body):
    with client(url) as c:
        body_out = assert_problem(c.request(method, path, json=body, headers=keys.headers(f"strict-{who}")), 422,
                                  "validation_error")
    assert body_out["errors"], body_out


def test_exact_types_are_accepted(url, keys):
    with client(url) as c:
        r = c.post("/v1/retrieve", json={"query": "bees", "top_k": 5, "rerank": False, "filters": {"page": 1}},
                   headers=keys.headers("strict-app"))
        assert r.status_code == 200, r.text


def test_openapi_says_request_bodies_are_strict(base_settings):
    schemas = create_app(base_settings).openapi()["components"]["schemas"]
    for name in ("RetrieveRequest", "ReindexRequest", "GoldenSetIn"):
        assert "Strict" in schemas[name]["description"], name
