"""One contract, two adapters: Qdrant Edge (embedded) and qdrant-client (local mode, the server code path)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from fathom.retrieval.bm25 import Bm25Encoder
from fathom.retrieval.store.contract import (
    RERANK,
    ChunkPoint,
    IndexLayout,
    IndexNotFound,
    IndexRef,
    MetadataFilter,
    SearchRequest,
    StoreUnavailable,
)
from fathom.retrieval.store.edge_store import EdgeStore
from fathom.retrieval.store.server_store import ServerStore
from fathom.retrieval.tenancy import InvalidTenant, Tenant

DOCS = {
    "bees": "Forager honeybees perform a waggle dance to show nestmates the direction of flowers.",
    "bread": "Sourdough starters hold wild yeasts and lactic acid bacteria that leaven bread.",
    "tides": "Tidal stream turbines turn the energy of tidal currents into electricity.",
    "press": "Gutenberg combined movable metal type, oil-based ink and a screw press.",
}
ENC = Bm25Encoder()


def _vec(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def _points(tenant: Tenant, version: int = 1, *, docs: dict[str, str] = DOCS, rerank: bool = True) -> list[ChunkPoint]:
    return [ChunkPoint(id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{d}/{version}")), dense=_vec(i),
                       sparse=ENC.encode_document(t, avgdl=12), rerank=_vec(100 + i, 4) if rerank else None,
                       payload={"tenant_id": tenant.id, "document_id": d, "doc_version": version, "text": t,
                                "filetype": "text/plain", "tags": {"team": "a" if i % 2 else "b"}})
            for i, (d, t) in enumerate(docs.items())]


@pytest.fixture(params=["edge", "server"])
def store(request, tmp_path):
    s = EdgeStore(tmp_path / "edge") if request.param == "edge" else ServerStore.from_url(":memory:")
    yield s
    s.close()


def _index(store, tenant: Tenant, version: int = 1, **kw) -> IndexRef:
    ref = IndexRef(tenant, version)
    store.create_index(ref, IndexLayout(dense_dim=8, rerank_dim=4, bm25_avgdl=12))
    store.upsert(ref, _points(tenant, version, **kw))
    return ref


def test_search_requires_a_tenant_object():
    with pytest.raises(TypeError):
        SearchRequest(tenant="acme", mode="bm25", limit=3, sparse=ENC.encode_query("x"))  # type: ignore[arg-type]
    with pytest.raises(InvalidTenant):
        Tenant("Acme Corp")
    with pytest.raises(ValueError):
        MetadataFilter({"tenant_id": "other"})


def test_modes_filters_and_layout(store):
    a = Tenant("a")
    ref = _index(store, a)
    store.activate(ref)
    assert store.live_version(a) == 1 and store.layout(ref).rerank_dim == 4
    bm25 = store.search(SearchRequest(tenant=a, mode="bm25", limit=2, sparse=ENC.encode_query("waggle dance bees")))
    assert bm25[0].document_id == "bees"
    dense = store.search(SearchRequest(tenant=a, mode="dense", limit=1, dense=_vec(2)))
    assert dense[0].document_id == "tides" and dense[0].score == pytest.approx(1.0, abs=1e-4)
    for fusion in ("rrf", "dbsf"):
        hybrid = store.search(SearchRequest(tenant=a, mode="hybrid", limit=4, dense=_vec(2), fusion=fusion,
                                            sparse=ENC.encode_query("tidal turbines")))
        assert hybrid[0].document_id == "tides"
    only_b = store.search(SearchRequest(tenant=a, mode="dense", limit=4, dense=_vec(0),
                                        filter=MetadataFilter({"tags.team": "b"})))
    assert {h.document_id for h in only_b} == {"bees", "tides"}
    any_of = store.search(SearchRequest(tenant=a, mode="dense", limit=4, dense=_vec(0),
                                        filter=MetadataFilter({"document_id": ["bread", "press"]})))
    assert {h.document_id for h in any_of} == {"bread", "press"}
    vecs = store.fetch_vectors(ref, [bm25[0].id], ["dense", RERANK])
    assert vecs[bm25[0].id][RERANK].shape == (4,)
    assert store.search(SearchRequest(tenant=a, mode="bm25", limit=3, sparse=ENC.encode_query("the of and"))) == []


def test_tenants_are_isolated_even_for_identical_text(store):
    a, b = Tenant("a"), Tenant("b")
    store.activate(_index(store, a))
    secret = {"secret": "Project Nightjar launches the quantum widget on Tuesday."}
    store.activate(_index(store, b, docs=secret))
    q = SearchRequest(tenant=a, mode="hybrid", limit=10, dense=_vec(0), sparse=ENC.encode_query(secret["secret"]))
    assert all(h.payload["tenant_id"] == "a" for h in store.search(q))
    assert "secret" not in {h.document_id for h in store.search(q)}
    with pytest.raises(ValueError):   # a point can't be written into another tenant's index
        store.upsert(IndexRef(a, 1), _points(b))
    # Vectors are fetched through the tenant's own index only.
    b_id = next(store.scroll(IndexRef(b, 1))).id
    assert store.fetch_vectors(IndexRef(a, 1), [b_id], ["dense"]) == {}


def test_delete_document_updates_bm25_statistics(store):
    a = Tenant("a")
    ref = _index(store, a, docs={"x": "rare word zebra", "y": "zebra common", "z": "common words only"})
    store.activate(ref)
    q = SearchRequest(tenant=a, mode="bm25", limit=3, sparse=ENC.encode_query("zebra"))
    before = {h.document_id: h.score for h in store.search(q)}
    store.delete_document(ref, "x")
    after = {h.document_id: h.score for h in store.search(q)}
    assert set(after) == {"y"} and store.count(ref) == 2
    assert after["y"] > before["y"]   # df(zebra) fell from 2 to 1: its IDF rose


def test_delete_keeps_only_the_new_version(store):
    a = Tenant("a")
    ref = _index(store, a, docs={"d": "old text about bees"})
    store.upsert(ref, _points(a, 2, docs={"d": "new text about bread"}))
    assert store.count(ref, document_id="d") == 2
    store.delete_document(ref, "d", keep_version=2)
    assert [h.payload["doc_version"] for h in store.scroll(ref, document_id="d")] == [2]


def test_versions_activate_and_drop(store):
    a = Tenant("a")
    v1 = _index(store, a, docs={"d": "version one"})
    assert store.activate(v1) is None
    v2 = _index(store, a, 2, docs={"d": "version two"})
    assert store.live_version(a) == 1             # building v2 does not touch the live pointer
    assert store.activate(v2) == 1 and store.live_version(a) == 2
    assert store.versions(a) == [1, 2] and [t.id for t in store.tenants()] == ["a"]
    with pytest.raises(ValueError):
        store.drop_index(v2)                      # never drop the live index
    store.drop_index(v1)
    assert store.versions(a) == [2]
    with pytest.raises(IndexNotFound):
        store.search(SearchRequest(tenant=Tenant("nobody"), mode="dense", limit=1, dense=_vec(0)))


def test_unreachable_server_raises_store_unavailable():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = ServerStore.from_url(f"http://127.0.0.1:{port}", timeout_s=1)
    with pytest.raises(StoreUnavailable):
        store.ping()
    with pytest.raises(StoreUnavailable):
        store.live_version(Tenant("a"))


# --- the query plan and the congruence of the two translators ---------------------------------------------------

def test_the_plan_is_built_once_from_the_request() -> None:
    from fathom.retrieval.store.filters import Condition
    from fathom.retrieval.store.query_plan import DenseLeg, SparseLeg, plan

    a = Tenant("a")
    hybrid = plan(SearchRequest(tenant=a, mode="hybrid", limit=5, dense=_vec(0), sparse=ENC.encode_query("bees"),
                                prefetch_limit=50, fusion="dbsf", hnsw_ef=256, filter=MetadataFilter({"tags.team": "a"})))
    dense, sparse = hybrid.legs
    assert isinstance(dense, DenseLeg) and isinstance(sparse, SparseLeg) and hybrid.single is None
    assert (dense.limit, dense.hnsw_ef, sparse.limit) == (50, 256, 50) and hybrid.limit == 5
    assert hybrid.fusion is not None and hybrid.fusion.kind == "dbsf"
    assert hybrid.filter.must == (Condition("tenant_id", "a"), Condition("tags.team", "a"))   # the tenant first
    assert sparse.idf_corpus.must == (Condition("tenant_id", "a"),)                          # IDF over the tenant only
    one = plan(SearchRequest(tenant=a, mode="bm25", limit=3, sparse=ENC.encode_query("bees")))
    assert one.fusion is None and isinstance(one.single, SparseLeg)
    assert plan(SearchRequest(tenant=a, mode="bm25", limit=3, sparse=ENC.encode_query("the of and"))).legs == ()
    stop_words = plan(SearchRequest(tenant=a, mode="hybrid", limit=3, dense=_vec(0), sparse=ENC.encode_query("the")))
    assert stop_words.fusion is None and isinstance(stop_words.single, DenseLeg)   # nothing to fuse with


_WORDS = ("honeybee waggle dance flowers nectar hive sourdough yeast bacteria bread tidal turbine current energy "
          "gutenberg movable type press ink octopus camouflage skin voyager probe plutonium coffee roast crack").split()


def _corpus(n: int = 40) -> dict[str, str]:
    """Every document a different length, so no two BM25 scores tie (see test_both_backends_give_the_same_answer)."""
    rng = np.random.default_rng(7)
    return {f"doc{i:02d}": " ".join(rng.choice(_WORDS, size=3 + i)) for i in range(n)}


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same two tenants' indexes in the embedded engine and in qdrant-client local mode."""
    stores = {"edge": EdgeStore(tmp_path_factory.mktemp("congruence") / "edge"), "server": ServerStore.from_url(":memory:")}
    corpus = _corpus()
    for s in stores.values():
        _index(s, Tenant("a"), docs=corpus)
        s.activate(IndexRef(Tenant("a"), 1))
        _index(s, Tenant("b"), docs={f"b-{d}": t for d, t in list(corpus.items())[:10]})
        s.activate(IndexRef(Tenant("b"), 1))
    yield stores
    for s in stores.values():
        s.close()


def _congruence_queries() -> list[tuple[str, SearchRequest]]:
    a = Tenant("a")
    texts = ["honeybee waggle dance", "sourdough bacteria bread", "tidal turbine energy current", "press ink type",
             "octopus skin camouflage", "voyager plutonium probe", "coffee crack", "nectar"]
    out: list[tuple[str, SearchRequest]] = []
    for i, t in enumerate(texts):
        out.append((f"bm25 {t!r}", SearchRequest(tenant=a, mode="bm25", limit=10, sparse=ENC.encode_query(t))))
        out.append((f"dense #{i}", SearchRequest(tenant=a, mode="dense", limit=10, dense=_vec(1000 + i), hnsw_ef=256)))
        for fusion in ("rrf", "dbsf"):
            out.append((f"hybrid {fusion} {t!r}", SearchRequest(tenant=a, mode="hybrid", limit=10, dense=_vec(1000 + i),
                                                                sparse=ENC.encode_query(t), fusion=fusion,
                                                                prefetch_limit=20, hnsw_ef=256)))
    team = MetadataFilter({"tags.team": "a"})
    some = MetadataFilter({"document_id": ["doc01", "doc05", "doc17", "doc30"]})
    for name, flt in (("tags.team", team), ("document_id any-of", some)):
        out.append((f"bm25 + {name}", SearchRequest(tenant=a, mode="bm25", limit=10, filter=flt,
                                                    sparse=ENC.encode_query("honeybee bread turbine press"))))
        out.append((f"hybrid dbsf + {name}", SearchRequest(tenant=a, mode="hybrid", limit=10, filter=flt,
                                                           dense=_vec(2000), sparse=ENC.encode_query("octopus coffee"),
                                                           fusion="dbsf")))
    b = Tenant("b")
    out.append(("tenant b bm25", SearchRequest(tenant=b, mode="bm25", limit=20, sparse=ENC.encode_query("honeybee bread"))))
    out.append(("tenant b hybrid", SearchRequest(tenant=b, mode="hybrid", limit=20, dense=_vec(3000),
                                                 sparse=ENC.encode_query("tidal press"))))
    return out


def _canonical(hits) -> list[tuple[float, str]]:
    """Best first, equal scores (to 4 decimals) by id: ties come back from the engines in no fixed order."""
    return sorted(((round(h.score, 4), h.document_id) for h in hits), key=lambda x: (-x[0], x[1]))


@pytest.mark.parametrize("name, request_", _congruence_queries(), ids=lambda v: v if isinstance(v, str) else "")
def test_both_backends_give_the_same_answer(both, name: str, request_: SearchRequest) -> None:
    """Same plan, two translators: the same documents in the same order with the same scores.

    Both engines search exactly here (40 points: the embedded engine's HNSW index stays below its full-scan
    threshold, local mode is brute force), so ids and order must agree; scores to 1e-4 (float32 in the engine,
    float64 in local mode's Python). The one thing the engines do not share is the order of *tied* scores
    within a leg: it decides which members of a tie straddling a limit are kept, and the ranks RRF sees.
    Measured on a corpus with ties, every leg returned the same (score, id) sets on both, while 8 of 30
    answers differed only there. The pipeline orders ties by id after the search (stages/search.py), so
    ties are the documented tolerance and this corpus has none (every document a different length).
    """
    edge, server = (both[k].search(request_) for k in ("edge", "server"))
    assert edge, f"{name}: the query matched nothing, so it checks nothing"
    assert all(h.payload["tenant_id"] == request_.tenant.id for h in edge + server)
    got_edge, got_server = _canonical(edge), _canonical(server)
    assert [d for _, d in got_edge] == [d for _, d in got_server], name
    assert [s for s, _ in got_edge] == pytest.approx([s for s, _ in got_server], abs=1e-4), name
