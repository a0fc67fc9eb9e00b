"""No server error on any input: filter grammar, integer ranges, upload counts, nesting depth, all routes.

Over real HTTP against the real app (Edge store, real models, a seeded tenant). Each case found a 500 or a
wrong code before the fix: filter keys such as ``tags.$where`` / ``tags.`` / ``tags..x`` and integers past 64
bits reached the store and raised (500); 102 uploaded files got ``400 bad_request`` while 101 got ``413``;
5,000-deep JSON raised RecursionError on ``POST /v1/documents`` (500) and was ``400 bad_request`` (not the
documented ``invalid_json``) on ``/v1/retrieve``. The hypothesis fuzzers then sweep the filter grammar,
numeric ranges and nesting depths over every JSON route and require 0 responses >= 500.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hardening_support import assert_problem, serving
from tests.support import Keys, client

SEED = [{"id": "acct/55501847", "text": "Customer account 55501847 was closed for fraud in March.", "tags": {"team": "risk"}},
        {"id": "acct/55501848", "text": "Customer account 55501848 is active and in good standing.", "tags": {"team": "ops"}}]
STATUSES: Counter[int] = Counter()
RETRIEVE_MAX_BYTES = 64 * 1024      # limits.retrieve_max_bytes (default)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys().add_tenants(["fuzz"])


@pytest.fixture(scope="module")
def base_url(tmp_path_factory, base_settings, models_ready, keys):
    with serving(base_settings, tmp_path_factory.mktemp("hardening-input"), keys) as (url, _):
        with client(url) as c:
            assert c.post("/v1/documents", json={"documents": SEED}, headers=keys.headers("fuzz-admin")).status_code == 200
        yield url


@pytest.fixture(scope="module")
def c(base_url):
    with client(base_url) as http:
        yield http


def retrieve(c, keys, body):
    r = c.post("/v1/retrieve", json=body, headers=keys.headers("fuzz-app"))
    STATUSES[r.status_code] += 1
    return r


@pytest.mark.parametrize("key", ["tags.$where", "tags.", "tags..x", "tags.a.b", "tags.A", "tags.a b", "tags.é",
                                 "tenant_id", "$or", "", "tags." + "a" * 65, "document_id\n", "tags.team\n"])
def test_filter_keys_outside_the_grammar_are_invalid_filter(c, keys, key):
    assert_problem(retrieve(c, keys, {"query": "account status", "filters": {key: "x"}}), 422, "invalid_filter")


@pytest.mark.parametrize("value", [2 ** 63, -(2 ** 63) - 1, 2 ** 64, 10 ** 30, [1, 2 ** 70], list(range(101)),
                                   "x" * 1025])
def test_filter_values_the_store_cannot_take_are_invalid_filter(c, keys, value):
    assert_problem(retrieve(c, keys, {"query": "account status", "filters": {"page": value}}), 422, "invalid_filter")


def test_filters_inside_the_grammar_still_work(c, keys):
    for flt in ({"tags.team": "risk"}, {"page": 2 ** 63 - 1}, {"page": -(2 ** 63)}, {"document_id": ["acct/55501847"]}):
        r = retrieve(c, keys, {"query": "customer account", "filters": flt})
        assert r.status_code == 200, (flt, r.text)
    r = retrieve(c, keys, {"query": "customer account", "filters": {"tags.team": "risk"}})
    assert {ch["document_id"] for ch in r.json()["chunks"]} <= {"acct/55501847"}


def test_too_many_files_is_413_at_every_count(c, keys):
    headers = keys.headers("fuzz-admin")
    for n in (101, 102, 150):
        files = [("files", (f"f{i}.txt", b"A short text file with enough words in it.")) for i in range(n)]
        assert_problem(c.post("/v1/documents", files=files, headers=headers), 413, "too_many_documents")


def deep(n: int, leaf: object = 1) -> str:
    return "[" * n + json.dumps(leaf) + "]" * n


@pytest.mark.parametrize("method,path,who", [("POST", "/v1/documents", "admin"), ("POST", "/v1/retrieve", "app"),
                                             ("PUT", "/v1/admin/golden-set", "admin"),
                                             ("POST", "/v1/admin/reindex", "admin")])
@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_deeply_nested_json_is_invalid_json(c, keys, method, path, who, depth):
    for body in (deep(depth), '{"query": "x", "filters": {"page": ' + deep(depth) + '}}',
                 '{"documents": [{"id": "a", "text": "b", "tags": ' + "{\"a\":" * depth + "1" + "}" * depth + "}]}"):
        r = c.request(method, path, content=body, headers={**keys.headers(f"fuzz-{who}"), "Content-Type": "application/json"})
        if path == "/v1/retrieve" and len(body) > RETRIEVE_MAX_BYTES:
            assert_problem(r, 413, "payload_too_large")      # the route's body limit answers first
        else:
            assert_problem(r, 400, "invalid_json")


# --- fuzzing: the filter grammar, numeric ranges and nesting depth, over every JSON route --------------------

_KEY_PART = st.text(alphabet=st.sampled_from("az09_-.$ \n\tÉ\u200b/\\*[]"), min_size=0, max_size=8)
FILTER_KEYS = st.one_of(st.sampled_from(["document_id", "filetype", "language", "source", "section", "page",
                                         "tenant_id", "tags.team", "tags"]),
                        st.builds(lambda p: "tags." + p, _KEY_PART), _KEY_PART)
INTS = st.one_of(st.integers(-(2 ** 63) - 2, 2 ** 63 + 1), st.integers(-(10 ** 40), 10 ** 40),
                 st.sampled_from([2 ** 63 - 1, 2 ** 63, -(2 ** 63), -(2 ** 63) - 1, 2 ** 64]))
SCALARS = st.one_of(INTS, st.booleans(), st.text(max_size=40), st.floats(allow_nan=False, allow_infinity=False), st.none())
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                      max_leaves=12)
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(filters=st.dictionaries(FILTER_KEYS, VALUES, max_size=4), top_k=st.one_of(INTS, st.booleans(), st.text(max_size=3)),
       mode=st.sampled_from(["hybrid", "dense", "bm25", "x"]))
def test_fuzz_retrieve_filters_never_a_server_error(c, keys, filters, top_k, mode):
    r = retrieve(c, keys, {"query": "customer account status", "filters": filters, "top_k": top_k, "mode": mode})
    assert r.status_code < 500, (filters, r.text[:300])
    if r.status_code >= 400:
        assert_problem(r, r.status_code)


ROUTES = [("POST", "/v1/retrieve", "app"), ("POST", "/v1/documents", "admin"), ("PUT", "/v1/admin/golden-set", "admin"),
          ("POST", "/v1/admin/reindex", "admin"), ("POST", "/v1/admin/rollback", "admin"),
          ("GET", "/v1/documents", "admin"), ("GET", "/v1/admin/index", "admin"), ("GET", "/v1/admin/jobs/x", "admin"),
          ("POST", "/v1/admin/jobs/x/cancel", "admin"), ("GET", "/v1/admin/golden-set", "admin"),
          ("DELETE", "/v1/documents/nope", "admin"), ("GET", "/healthz", "app"), ("GET", "/readyz", "app"),
          ("GET", "/metrics", "app")]


@FUZZ
@given(route=st.sampled_from(ROUTES), depth=st.integers(1, 3_000), body=VALUES)
def test_fuzz_every_route_with_deep_and_odd_bodies(c, keys, route, depth, body):
    method, path, who = route
    raw = json.dumps(body) if depth < 30 else "[" * depth + json.dumps(body) + "]" * depth
    r = c.request(method, path, content=raw, headers={**keys.headers(f"fuzz-{who}"), "Content-Type": "application/json"})
    STATUSES[r.status_code] += 1
    assert r.status_code < 500, (route, depth, r.text[:300])


@FUZZ
@given(doc_id=st.text(max_size=20), tags=st.dictionaries(_KEY_PART, VALUES, max_size=3),
       title=st.one_of(st.none(), st.text(max_size=10), INTS))
def test_fuzz_document_bodies_never_a_server_error(c, keys, doc_id, tags, title):
    r = c.post("/v1/documents", json={"documents": [{"id": doc_id, "text": "Fuzzed document body text here.",
                                                     "tags": tags, "title": title}]},
               headers=keys.headers("fuzz-admin"))
    STATUSES[r.status_code] += 1
    assert r.status_code < 500, (doc_id, tags, r.text[:300])


@FUZZ
@given(doc_id=st.text(min_size=1, max_size=30), cursor=st.text(max_size=20), limit=st.one_of(INTS, st.text(max_size=4)),
       status=st.text(max_size=8))
def test_fuzz_path_and_query_parameters_never_a_server_error(c, keys, doc_id, cursor, limit, status):
    from urllib.parse import quote

    headers = keys.headers("fuzz-admin")
    for r in (c.delete(f"/v1/documents/{quote(doc_id, safe='')}", headers=headers),
              c.get("/v1/documents", params={"cursor": cursor, "limit": str(limit), "status": status}, headers=headers),
              c.get(f"/v1/admin/jobs/{quote(doc_id, safe='')}", headers=headers)):
        STATUSES[r.status_code] += 1
        assert r.status_code < 500, (doc_id, cursor, limit, status, r.text[:300])


def test_zz_report_statuses():
    """The tally over this module's requests (printed with -s): no status >= 500."""
    print("hardening fuzz statuses:", dict(sorted(STATUSES.items())))
    assert STATUSES and not [s for s in STATUSES if s >= 500]
