"""Metrics, traces and logs over real HTTP, on the embedded default (no Redis configured).

/metrics is scraped and parsed with prometheus_client's own parser; spans go
to the OpenTelemetry SDK's in-memory exporter; logs go through the service's
JSON formatter into a buffer. The same runtime shows that without
FATHOM_REDIS_URL the cache and the limiter run in-process.
"""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from fathom.ingest.ingest_pipeline import IngestItem
from fathom.retrieval.tenancy import Tenant
from fathom.service.app import create_app
from fathom.service.observability.logs import json_handler
from fathom.service.observability.tracing import Tracing
from tests.ops_support import open_seeded_runtime
from tests.support import Keys, client, live_server

STAGES = {"auth", "ratelimit", "cache", "embed", "search", "rerank", "guard", "total"}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(scope="module")
def keys() -> Keys:
    k = Keys()
    k.add("alpha-app", "alpha", "app")
    return k


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
def runtime(tmp_path_factory, sample_state, base_settings, keys, spans):
    rt = open_seeded_runtime(sample_state, tmp_path_factory.mktemp("obs"), base_settings, keys, redis_url=None)
    rt.tracing = Tracing(spans, batch=False)   # the configured exporter is "none": tracing is off by default
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def base_url(runtime):
    with live_server(create_app(runtime.settings, runtime)) as url:
        yield url


def ask(base_url: str, keys: Keys, query: str, **headers: str):
    with client(base_url) as c:
        r = c.post("/v1/retrieve", json={"query": query}, headers=keys.headers("alpha-app", **headers))
    assert r.status_code == 200, r.text
    return r.json()


def scrape(base_url: str) -> tuple[str, dict]:
    with client(base_url) as c:
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return r.text, {f.name: f for f in text_string_to_metric_families(r.text)}


def test_embedded_default_caches_in_process(base_url, keys, runtime):
    assert runtime.redis is None and runtime.answer_cache.store.backend == "memory"
    q = "What fuels the Voyager probes?"
    assert ask(base_url, keys, q)["cache"] == "miss"
    assert ask(base_url, keys, q)["cache"] == "hit-exact"
    runtime.ingest.ingest(Tenant("alpha"), [IngestItem(document_id="rtg.txt", filename="rtg.txt", text=(
        "Radioisotope thermoelectric generators turn the heat of decaying plutonium into electricity."))])
    assert ask(base_url, keys, q)["cache"] == "miss"
    with client(base_url) as c:
        ready = c.get("/readyz").json()
    assert ready["status"] == "ready" and ready["checks"] == {"models": "ok", "store": "ok", "cache": "memory"}


def test_metrics_expose_stage_histograms_and_outcomes(base_url, keys):
    secret_query = "How is coffee roasted to a city roast?"
    ask(base_url, keys, secret_query)
    ask(base_url, keys, secret_query)                                # an exact hit
    ask(base_url, keys, "What is the best football team in Europe?")  # no_relevant_context
    text, families = scrape(base_url)
    counts = {s.labels["stage"]: s.value for s in families["fathom_stage_seconds"].samples
              if s.name == "fathom_stage_seconds_count"}
    assert STAGES <= set(counts) and all(counts[s] > 0 for s in STAGES)
    assert families["fathom_stage_seconds"].type == "histogram"
    requests = {(s.labels["route"], s.labels["status"]): s.value for s in families["fathom_request_seconds"].samples
                if s.name == "fathom_request_seconds_count"}
    assert requests[("/v1/retrieve", "200")] >= 3
    guard = {(s.labels["tenant"], s.labels["status"], s.labels["reason"]): s.value
             for s in families["fathom_guard_outcomes"].samples if s.name == "fathom_guard_outcomes_total"}
    assert guard[("alpha", "ok", "none")] >= 2
    assert sum(v for (t, st, _), v in guard.items() if t == "alpha" and st == "no_relevant_context") >= 1
    lookups = {s.labels["result"]: s.value for s in families["fathom_cache_lookups"].samples
               if s.name == "fathom_cache_lookups_total"}
    assert lookups["hit_exact"] >= 1 and lookups["miss"] >= 2
    state = {s.labels["fathom_cache_state"]: s.value for s in families["fathom_cache_state"].samples}
    assert state["memory"] == 1 and state["bypassed"] == 0
    retrieve = {s.labels["status"]: s.value for s in families["fathom_retrieve"].samples if s.name == "fathom_retrieve_total"}
    assert retrieve["ok"] >= 2 and retrieve["no_relevant_context"] >= 1
    assert "coffee" not in text.lower() and "roast" not in text.lower()   # no query (or chunk) text in metrics


def test_one_span_per_stage_under_the_request_span(base_url, keys, spans):
    spans.clear()
    ask(base_url, keys, "Why does an octopus change the colour of its skin?",
        traceparent=f"00-{TRACE_ID}-00f067aa0ba902b7-01")
    finished = spans.get_finished_spans()
    root = next(s for s in finished if s.name == "POST /v1/retrieve")
    assert format(root.context.trace_id, "032x") == TRACE_ID       # the caller's trace continues
    assert root.attributes["http.response.status_code"] == 200 and root.attributes["fathom.tenant"] == "alpha"
    stages = [s for s in finished if s.parent is not None and s.parent.span_id == root.context.span_id]
    assert {"auth", "ratelimit", "cache", "embed", "search", "rerank", "guard"} <= {s.name for s in stages}
    assert all(s.end_time >= s.start_time and s.context.trace_id == root.context.trace_id for s in stages)


@pytest.fixture
def log_buffer():
    buffer = io.StringIO()
    handler = json_handler(buffer)
    root, access = logging.getLogger(), logging.getLogger("fathom.access")
    root.addHandler(handler)
    level = access.level
    access.setLevel(logging.INFO)
    yield buffer
    root.removeHandler(handler)
    access.setLevel(level)


def test_logs_are_json_lines_with_request_id_and_tenant_and_no_query(base_url, keys, runtime, log_buffer, monkeypatch):
    query = "Which office floor do the printers move to?"
    ask(base_url, keys, query, **{"X-Request-ID": "req-obs-1"})
    lines = [json.loads(line) for line in log_buffer.getvalue().splitlines()]
    access = next(line for line in lines if line["logger"] == "fathom.access" and line["request_id"] == "req-obs-1")
    assert access["tenant"] == "alpha" and access["route"] == "/v1/retrieve" and access["status"] == 200
    assert access["latency_ms"] > 0 and access["retrieve_status"] in {"ok", "no_relevant_context"}
    assert query not in log_buffer.getvalue() and "printers" not in log_buffer.getvalue()
    # With content logging switched on for debugging, the same query does appear.
    service = runtime.settings.service.model_copy(update={"debug_log_content": True})
    monkeypatch.setattr(runtime, "settings", runtime.settings.model_copy(update={"service": service}))
    ask(base_url, keys, query, **{"X-Request-ID": "req-obs-2"})
    assert query in log_buffer.getvalue()
