"""``fathom store init`` and the server adapter's cluster settings.

The bootstrap job of the Helm chart runs ``fathom store init``; here it runs
against qdrant-client's local mode (the server code path) and, as a real CLI
process twice over, against the embedded engine. Local mode keeps neither
sharding parameters nor payload schemas, so a recording subclass of the real
local client notes what each request asked for; transient failures are
injected by a client that fails its first calls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from fathom.ingest.ingest_pipeline import IngestItem
from fathom.retrieval.components import open_store
from fathom.retrieval.store.contract import IndexRef, StoreUnavailable
from fathom.retrieval.store.server_store import ClusterOptions, ServerStore
from fathom.retrieval.tenancy import Tenant
from fathom.service.store_commands import init_store
from tests.support import REPO, free_port



class RecordingClient(QdrantClient):
    """The real local-mode client, also recording the cluster-relevant arguments of each request."""

    def __init__(self) -> None:
        super().__init__(location=":memory:")
        self.calls: list[tuple[str, dict]] = []

    def create_collection(self, collection_name, **kw):  # type: ignore[no-untyped-def]
        self.calls.append(("create_collection", kw))
        return super().create_collection(collection_name, **kw)

    def create_payload_index(self, collection_name, field_name, **kw):  # type: ignore[no-untyped-def]
        self.calls.append(("create_payload_index", {"field_name": field_name, **kw}))
        return super().create_payload_index(collection_name, field_name, **kw)

    def query_points(self, collection_name, **kw):  # type: ignore[no-untyped-def]
        self.calls.append(("query_points", kw))
        return super().query_points(collection_name, **kw)

    def upsert(self, collection_name, **kw):  # type: ignore[no-untyped-def]
        self.calls.append(("upsert", kw))
        return super().upsert(collection_name, **kw)

    def named(self, name: str) -> list[dict]:
        return [kw for n, kw in self.calls if n == name]


@pytest.fixture
def server_settings(base_settings, models_ready, tmp_path):
    return base_settings.model_copy(update={
        "state_dir": tmp_path / "state", "registry_url": None,
        "store": base_settings.store.model_copy(update={
            "backend": "server", "url": ":memory:", "shard_number": 3, "replication_factor": 2,
            "write_consistency_factor": 2, "read_consistency": "majority", "write_ordering": "medium"}),
        # MiniLM only: enough for the layout and a retrieval, and light on a 2-core CI machine.
        "rerank": base_settings.rerank.model_copy(update={"kind": "none"}),
        "ingest": base_settings.ingest.model_copy(update={"embed_mpnet": False}),
    })


def _store(settings) -> tuple[ServerStore, RecordingClient]:
    store = open_store(settings)
    assert isinstance(store, ServerStore)
    assert store.cluster == ClusterOptions(shard_number=3, replication_factor=2, write_consistency_factor=2,
                                           read_consistency="majority", write_ordering="medium", retries=3,
                                           backoff_s=0.1)
    store.client.close()
    store.client = RecordingClient()
    return store, store.client


def test_init_is_idempotent_and_creates_the_layout_the_service_uses(server_settings):
    store, client = _store(server_settings)
    first = init_store(server_settings, ["acme", "globex"], store=store)
    second = init_store(server_settings, ["acme", "globex"], store=store)

    assert {t: r["created"] for t, r in first["tenants"].items()} == {"acme": True, "globex": True}
    assert {t: r["created"] for t, r in second["tenants"].items()} == {"acme": False, "globex": False}
    assert second["tenants"] == {t: {**r, "created": False} for t, r in first["tenants"].items()}   # same layout
    assert len(client.named("create_collection")) == 2            # the second run created nothing
    for tenant in ("acme", "globex"):
        layout = first["tenants"][tenant]["layout"]
        assert layout["alias"] == f"fathom__{tenant}__live" and layout["collection"] == f"fathom__{tenant}__v1"
        assert layout["live"] is True and store.versions(Tenant(tenant)) == [1]
        assert layout["sparse"] == {"bm25": {"modifier": "idf"}}
        assert layout["vectors"]["dense"]["size"] == 384

    created = client.named("create_collection")[0]
    assert (created["shard_number"], created["replication_factor"], created["write_consistency_factor"]) == (3, 2, 2)
    assert created["sparse_vectors_config"]["bm25"].modifier == qm.Modifier.IDF
    indexes = {kw["field_name"]: kw["field_schema"] for kw in client.named("create_payload_index")}
    assert indexes["tenant_id"].is_tenant is True and indexes["document_id"].is_tenant is not True


def test_first_ingest_after_init_uses_the_created_version_with_read_and_write_settings(server_settings):
    from fathom.ingest.wiring import build_ingest
    from fathom.ingest.registry import Registry
    from fathom.retrieval.components import build_pipeline, load_models
    from fathom.retrieval.query_pipeline import RetrievalQuery

    store, client = _store(server_settings)
    init_store(server_settings, ["acme"], store=store)
    models = load_models(server_settings, with_rerank=False)
    registry = Registry(server_settings.registry)
    try:
        report = build_ingest(server_settings, store, registry, models).ingest(Tenant("acme"), [IngestItem(
            document_id="bees", filename="bees.txt",
            text="Forager honeybees perform a waggle dance that tells nestmates the direction of flowers.")])
        assert report.index_version == 1 and store.versions(Tenant("acme")) == [1]
        assert store.count(IndexRef(Tenant("acme"), 1)) >= 1
        pipeline = build_pipeline(server_settings, store, models, reranker=None)
        result = pipeline.retrieve(RetrievalQuery(tenant=Tenant("acme"), text="waggle dance", top_k=1, rerank=False))
        assert result.candidates and result.candidates[0].hit.document_id == "bees"
    finally:
        registry.close()
    assert client.named("upsert") and all(kw["ordering"] == qm.WriteOrdering.MEDIUM for kw in client.named("upsert"))
    assert client.named("query_points") and all(kw["consistency"] == qm.ReadConsistencyType.MAJORITY
                                                for kw in client.named("query_points"))


def test_init_reads_tenants_from_the_tenants_file(server_settings, tmp_path):
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps({"initech": {"guard": {"min_confidence": 0.6}}}))
    settings = server_settings.model_copy(update={
        "service": server_settings.service.model_copy(update={"tenants_file": path})})
    store, _ = _store(settings)
    assert list(init_store(settings, store=store)["tenants"]) == ["initech"]


class FlakyClient(RecordingClient):
    """Fault injection: the first ``failures`` calls of get_collections fail like a node restarting."""

    def __init__(self, failures: int, exc: Exception) -> None:
        super().__init__()
        self.failures, self.exc, self.attempts = failures, exc, 0

    def get_collections(self, **kw):  # type: ignore[no-untyped-def]
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.exc
        return super().get_collections(**kw)


TRANSIENT = ResponseHandlingException(ConnectionError("connection reset by peer"))


def _unavailable_503() -> UnexpectedResponse:
    import httpx

    return UnexpectedResponse(503, "Service Unavailable", b"{}", httpx.Headers())


def _bad_request_400() -> UnexpectedResponse:
    import httpx

    return UnexpectedResponse(400, "Bad Request", b"{}", httpx.Headers())


@pytest.mark.parametrize("exc", [TRANSIENT, _unavailable_503()], ids=["transport", "http-503"])
def test_transient_failures_are_retried_with_backoff(exc):
    client = FlakyClient(2, exc)
    store = ServerStore(client, cluster=ClusterOptions(retries=3, backoff_s=0.01))
    assert store.tenants() == [] and client.attempts == 3


def test_retries_are_bounded_and_client_errors_are_not_retried():
    client = FlakyClient(5, TRANSIENT)
    with pytest.raises(StoreUnavailable):
        ServerStore(client, cluster=ClusterOptions(retries=2, backoff_s=0.01)).tenants()
    assert client.attempts == 3                      # one try and two retries, then the caller hears of it
    client = FlakyClient(1, _bad_request_400())
    with pytest.raises(StoreUnavailable):
        ServerStore(client, cluster=ClusterOptions(retries=3, backoff_s=0.01)).tenants()
    assert client.attempts == 1                      # a 400 will not get better by asking again


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fathom.service.cli", *args], cwd=REPO, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600)


def test_cli_twice_on_the_embedded_engine_gives_the_same_layout(models_ready, tmp_path):
    env = {"FATHOM_STATE_DIR": str(tmp_path / "state"), "DO_NOT_TRACK": "1"}
    first = _cli(["store", "init", "--tenant", "acme"], env)
    assert first.returncode == 0, first.stderr
    second = _cli(["store", "init", "--tenant", "acme"], env)
    assert second.returncode == 0, second.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["tenants"]["acme"]["created"] is True and b["tenants"]["acme"]["created"] is False
    assert a["tenants"]["acme"]["layout"] == b["tenants"]["acme"]["layout"]
    assert a["tenants"]["acme"]["version"] == b["tenants"]["acme"]["version"] == 1


def test_cli_reports_an_unreachable_server_and_exits_non_zero(tmp_path):
    env = {"FATHOM_STATE_DIR": str(tmp_path / "state"), "FATHOM_STORE__BACKEND": "server",
           "FATHOM_STORE__URL": f"http://127.0.0.1:{free_port()}", "FATHOM_STORE__TIMEOUT_S": "1",
           "FATHOM_STORE__RETRIES": "1", "DO_NOT_TRACK": "1"}
    proc = _cli(["store", "init", "--tenant", "acme", "--wait", "1"], env)
    assert proc.returncode == 3 and "store unavailable" in proc.stderr


class SlowFailingClient(FlakyClient):
    """Fault injection: every get_collections call takes 0.3 s and then times out, like a hung node."""

    def get_collections(self, **kw):  # type: ignore[no-untyped-def]
        import time

        time.sleep(0.3)
        return super().get_collections(**kw)


def test_retries_stop_at_the_retry_budget_not_after_every_retry():
    import time

    client = SlowFailingClient(100, ResponseHandlingException(TimeoutError("timed out")))
    store = ServerStore(client, cluster=ClusterOptions(retries=10, backoff_s=0.01, retry_budget_s=0.5))
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.tenants()
    assert client.attempts == 2 and time.monotonic() - t0 < 1.5   # not 11 attempts x 0.3 s
