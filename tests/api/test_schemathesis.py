"""Schemathesis against the service's own OpenAPI document, over real HTTP, on every operation.

The server is the real app (real models, Edge store, the sample corpus in tenant ``alpha``) with a private
Redis behind the answer cache, the write generations and the job queue, so cache and job routes run for
real. Requests are generated from ``/openapi.json`` (its examples, then positive and negative fuzzing) and
each response is checked: no 5xx, the status code is one the operation declares, the content type and the
body match the declared response schema (problem+json included). App routes get an ``app`` key, the
documents and admin routes an ``admin`` key, and a second pass drives the admin routes with an
``operator`` key naming the tenant in ``X-Fathom-Tenant``.

Bounded for a shared 2-core machine: ``MAX_EXAMPLES`` fuzzed cases per operation, a fixed seed and
derandomised generation, so a failure reproduces. Checks that need state the service cannot promise
(``positive_data_acceptance``: the ingest validates tag keys and content beyond JSON Schema) are left out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from fathom.service.core.config import get_settings
from fathom.service.app import create_app
from fathom.service.cli import SAMPLE_CORPUS, ingest_paths
from fathom.service.runtime import Runtime
from tests.jobs_support import job_settings
from tests.support import Keys, client, live_server

POSITIVE_EXAMPLES = 25        # schema-conforming cases per operation
NEGATIVE_EXAMPLES = 15        # schema-violating cases per operation (each must be a 4xx, never a 5xx)
OPERATOR_EXAMPLES = 8         # per mode, for the operator pass over the admin and documents routes
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
CONFIG = {"seed": 20261123, "generation": {"deterministic": True}}
# Collected from the app itself (no server needed): every operation of the document gets a test.
OPERATIONS = sorted((method.upper(), path) for path, item in create_app(get_settings()).openapi()["paths"].items()
                    for method in item)
ADMIN_OPERATIONS = [op for op in OPERATIONS if op[1].startswith(("/v1/admin", "/v1/documents"))]


@dataclass
class Api:
    url: str
    keys: Keys
    # operation label -> response status counts, across both passes
    seen: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))

    def headers_for(self, path: str, *, operator: bool = False) -> dict[str, str]:
        if operator:
            return self.keys.headers("operator", **{"X-Fathom-Tenant": "alpha"})
        if path.startswith(("/v1/documents", "/v1/admin")):
            return self.keys.headers("admin")
        return self.keys.headers("app")


@pytest.fixture(scope="module")
def api(tmp_path_factory, base_settings, models_ready, redis_server):
    keys = Keys()
    keys.add("app", "alpha", "app")
    keys.add("admin", "alpha", "admin")
    keys.add("operator", None, "operator")
    # Answer cache on, in Redis, like production; rate limits off (the fuzzer is one very busy client).
    settings = job_settings(base_settings, tmp_path_factory.mktemp("schemathesis-state"), keys,
                            redis_url=redis_server.url, cache={"enabled": True, "key_prefix": "st-cache"},
                            jobs={"key_prefix": "st-jobs"})
    rt = Runtime.open(settings)
    ingest_paths(rt, "alpha", [SAMPLE_CORPUS], {"corpus": "sample"}, quiet=True)
    try:
        with live_server(create_app(settings, rt)) as url:
            yield Api(url, keys)
    finally:
        rt.close()


@pytest.fixture(scope="module")
def openapi_schema(api):
    return schemathesis.openapi.from_url(f"{api.url}/openapi.json", config=SchemathesisConfig.from_dict(CONFIG))


def fuzz(api: Api, schema, method: str, path: str, *, positive: int, negative: int, operator: bool = False) -> int:
    """The operation's OpenAPI examples, then ``positive`` and ``negative`` generated cases, each called over HTTP
    and checked. Derandomised (the same cases every run) and without shrinking (bounded time); returns the count."""
    operation = schema[path][method]
    headers = api.headers_for(path, operator=operator)
    calls = 0

    def call(case) -> None:  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        response = case.call_and_validate(base_url=api.url, headers=headers, checks=CHECKS, timeout=120)
        api.seen[f"{method} {path}"][response.status_code] += 1

    def run(strategy, n: int) -> None:  # type: ignore[no-untyped-def]
        test: Callable[[], None] = settings(
            max_examples=n, derandomize=True, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck))(given(strategy)(call))
        test()

    for example in schema.get_strategies_from_examples(operation):
        run(example, 1)
    run(operation.as_strategy(generation_mode=GenerationMode.POSITIVE), positive)
    if negative and (operation.body or list(operation.iter_parameters())):
        try:
            run(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE), negative)
        except Unsatisfiable:
            pass     # nothing to violate: e.g. a free-form string path parameter is the only input
    return calls


@pytest.mark.parametrize("method,path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_conforms(api, openapi_schema, method, path):
    assert fuzz(api, openapi_schema, method, path, positive=POSITIVE_EXAMPLES, negative=NEGATIVE_EXAMPLES) >= 1


@pytest.mark.parametrize("method,path", ADMIN_OPERATIONS, ids=[f"{m} {p}" for m, p in ADMIN_OPERATIONS])
def test_admin_operation_conforms_for_an_operator(api, openapi_schema, method, path):
    fuzz(api, openapi_schema, method, path, positive=OPERATOR_EXAMPLES, negative=OPERATOR_EXAMPLES, operator=True)


def test_job_routes_with_a_real_job(api, openapi_schema):
    """Generated job ids are all unknown (404); a real one, from a reindex, is checked against the schema too."""
    post = openapi_schema["/v1/admin/reindex"]["POST"].Case(body={"chunker": "fixed"}, media_type="application/json")
    headers = api.headers_for("/v1/admin")
    with client(api.url) as c:
        started = post.call(base_url=api.url, headers=headers)
        if started.status_code == 409:      # a fuzzed reindex still holds the tenant: wait for it and cancel nothing
            job_id = started.json()["job_id"]
        else:
            assert started.status_code == 202, started.text
            job_id = started.json()["id"]
        post.validate_response(started, checks=CHECKS)
        for method, path in (("GET", "/v1/admin/jobs/{job_id}"), ("POST", "/v1/admin/jobs/{job_id}/cancel"),
                             ("GET", "/v1/admin/jobs/{job_id}")):
            case = openapi_schema[path][method].Case(path_parameters={"job_id": job_id})
            response = case.call_and_validate(base_url=api.url, headers=headers, checks=CHECKS, timeout=120)
            assert response.status_code in (200, 202, 409), response.text    # 409: the job ended before the cancel
            api.seen[f"{method} {path}"][response.status_code] += 1
        job = c.get(f"/v1/admin/jobs/{job_id}", headers=headers).json()
        assert job["id"] == job_id and job["tenant"] == "alpha"


def test_the_fuzzing_reached_every_operation(api):
    """Every documented operation was called, and past authentication: not every answer a 401/403."""
    if len(api.seen) < len(OPERATIONS):
        pytest.skip("run with the fuzzing tests above")
    with client(api.url) as c:
        spec = c.get("/openapi.json").json()
    operations = {f"{m.upper()} {p}" for p, item in spec["paths"].items() for m in item}
    summary = {op: dict(sorted(api.seen[op].items())) for op in sorted(operations)}
    cases = sum(sum(v.values()) for v in summary.values())
    print(f"\nschemathesis: {len(operations)} operations, {cases} cases")
    for op, statuses in summary.items():
        print(f"  {op}: {statuses}")
    assert all(summary[op] for op in operations), [op for op in operations if not summary[op]]
    past_auth = {op for op, statuses in summary.items() if set(statuses) - {401, 403}}
    assert past_auth == operations, operations - past_auth
    assert all(code < 500 for statuses in summary.values() for code in statuses)
