"""Tenant isolation as a property: nothing of tenant A ever reaches tenant B, whatever the tenants, texts and ids.

One real service for the module (uvicorn on a free port, real MiniLM, real Qdrant Edge shards, the answer cache
and the rate limiter in a private redis-server, jobs in Redis with the API's consumer thread). Hypothesis draws
the tenants (ids from the allowed alphabet, often near-collisions of each other: ``acme`` / ``acme-`` /
``acme__v1`` / a prefix), the owner's documents (random ids, texts carrying a unique marker word and the
intruder's own vocabulary) and the queries (the owner's exact text among them), and checks every channel a
tenant could learn something through:

* results: the intruder's ``/v1/retrieve`` never returns the owner's ids or text, in any mode, cached or not,
  and a ``document_id`` filter naming the owner's document answers exactly like one naming nothing;
* the answer cache: the intruder's first question with the owner's exact text is a ``miss`` (never a hit), every
  Redis key of the cache, the limiter and the write generations carries its tenant's hash tag, and every cached
  entry under ``{T}`` holds T's chunks only;
* jobs: the owner's job id is ``404`` for the intruder, with the body of a job id that never existed;
* documents by id: the intruder's DELETE/GET of the owner's document id answers exactly like a non-existent
  id (404 ``document_not_found`` for DELETE; no existence oracle) and deletes nothing;
* errors: no error body the intruder receives mentions the owner's text;
* metrics: the intruder's requests move only series labelled with its own tenant, and no label value carries
  a document id, a query or chunk text;
* BM25 statistics: the intruder's BM25 and hybrid scores are bit-identical before and after the owner ingests
  documents made of the intruder's own terms (the IDF corpus is the tenant's own chunks).

Kept small for a shared 2-core machine: fixed-window chunking, no reranker, a bounded number of examples,
derandomized (the same examples every run), no shrinking (a failure prints its example; each one costs ~1 s).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, Phase, assume, given, note, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from fathom.retrieval.tenancy import Tenant
from fathom.service.app import create_app
from fathom.service.auth import generate_key, hash_key
from fathom.service.runtime import Runtime
from tests.ops_support import RedisServer, running_redis
from tests.support import client, live_server

EXAMPLES = 30
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])

# The intruder's vocabulary; the owner's documents are made of these words too, so lexically they compete.
VOCAB = ("harbour", "turbine", "membrane", "glacier", "copper", "orchard", "lantern", "saffron", "granite", "pigeon",
         "violin", "tundra", "cobalt", "meadow", "quartz", "ferry", "walnut", "beacon", "thistle", "canyon")
MARK_LETTERS = "bcdfghjklmnpqrstvwxz"
_serial = itertools.count(1)
RAN: dict[str, int] = {}    # property name -> examples actually run (printed at the end of the module)


class KeyFile:
    """Hashed API keys in a JSON file that the running service re-reads when it changes (rotation without restart).

    Each write gets its own mtime: two writes within one filesystem timestamp tick would otherwise look unchanged.
    """

    def __init__(self, path: Path):
        self.path = path
        self.entries: list[dict[str, Any]] = []
        self.plain: dict[tuple[str, str], str] = {}
        self._ns = time.time_ns()
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"keys": self.entries}))
        os.replace(tmp, self.path)
        self._ns += 1_000_000
        os.utime(self.path, ns=(self._ns, self._ns))

    def headers(self, tenant: str, role: str) -> dict[str, str]:
        if (tenant, role) not in self.plain:
            for r in ("app", "admin"):
                key = generate_key()
                self.plain[(tenant, r)] = key
                self.entries.append({"id": f"{tenant}-{r}", "sha256": hash_key(key), "tenant": tenant, "role": r})
            self._write()
        return {"Authorization": f"Bearer {self.plain[(tenant, role)]}"}


@dataclass
class World:
    """What each tenant owns, as far as the test knows: document id -> marker word, and its texts."""

    docs: dict[str, dict[str, str]] = field(default_factory=dict)
    texts: dict[str, list[str]] = field(default_factory=dict)
    jobs: dict[str, str] = field(default_factory=dict)

    def markers(self, tenant: str) -> set[str]:
        return set(self.docs.get(tenant, {}).values())


@pytest.fixture(scope="module")
def redis_srv(tmp_path_factory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("iso-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory) -> KeyFile:
    return KeyFile(tmp_path_factory.mktemp("iso-keys") / "keys.json")


@pytest.fixture(scope="module")
def runtime(tmp_path_factory, base_settings, models_ready, keyfile, redis_srv) -> Iterator[Runtime]:
    s = base_settings
    rt = Runtime.open(s.model_copy(update={
        "state_dir": tmp_path_factory.mktemp("iso-state"), "registry_url": None, "redis_url": redis_srv.url,
        # A request deadline a loaded machine never reaches: deadlines are not what this module tests.
        "service": s.service.model_copy(update={"api_keys": None, "api_keys_file": keyfile.path,
                                                "request_timeout_ms": 30_000.0}),
        "rerank": s.rerank.model_copy(update={"kind": "none"}),
        "ingest": s.ingest.model_copy(update={"embed_mpnet": False, "chunker": "fixed"}),
        # Limits on (their buckets are Redis keys whose namespacing is checked) but never reached here.
        "limits": s.limits.model_copy(update={"key_rate": 1000.0, "key_burst": 1000, "tenant_rate": 1000.0,
                                              "tenant_burst": 1000}),
    }))
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def http(runtime) -> Iterator[httpx.Client]:
    with live_server(create_app(runtime.settings, runtime)) as url, client(url) as c:
        yield c


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.fixture(scope="module", autouse=True)
def _report_examples():
    yield
    print("\nhypothesis examples run:", json.dumps(RAN))


# --- strategies ---------------------------------------------------------------------------------------------

TENANT_IDS = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,62}", fullmatch=True)
_TENANT_OK = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@st.composite
def tenant_pairs(draw) -> tuple[str, str]:
    """(owner, intruder): unrelated, or the intruder's id a near-collision of the owner's (prefix, suffix, ``__v1``)."""
    owner = draw(TENANT_IDS)
    near = [t for t in (owner + "-", owner + "_", owner + "0", owner + "__v1", owner[:-1], owner.replace("-", "_"),
                        owner.replace("_", "-")) if _TENANT_OK.match(t) and t != owner]
    intruder = draw(st.sampled_from(near) if near and draw(st.booleans()) else TENANT_IDS)
    assume(intruder != owner)
    return owner, intruder


def _marker(draw) -> str:
    """A word no other document has: random letters, then a serial number (unique within the run)."""
    return draw(st.text(MARK_LETTERS, min_size=4, max_size=8)) + str(next(_serial))


@st.composite
def documents(draw, min_size: int = 1, max_size: int = 4) -> list[dict[str, str]]:
    """Documents of random ids (``/`` and ``.`` included) whose text mixes the shared vocabulary and a marker."""
    out = []
    for _ in range(draw(st.integers(min_size, max_size))):
        n = next(_serial)
        doc_id = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,15}(/[A-Za-z0-9_-]{1,8}){0,2}", fullmatch=True))
        mark = _marker(draw)
        words = draw(st.lists(st.sampled_from(VOCAB), min_size=6, max_size=14))
        half = len(words) // 2
        text = (f"The {' '.join(words[:half])} report mentions {mark} twice. "
                f"Field notes on {' '.join(words[half:])} and {mark} follow.")
        out.append({"id": f"{doc_id}-{n}", "text": text, "title": f"note {mark}", "mark": mark})
    return out


# --- helpers ------------------------------------------------------------------------------------------------

def ingest(http: httpx.Client, keyfile: KeyFile, world: World, tenant: str, docs: list[dict[str, str]]) -> None:
    r = http.post("/v1/documents", headers=keyfile.headers(tenant, "admin"),
                  json={"documents": [{"id": d["id"], "text": d["text"], "title": d["title"]} for d in docs]})
    assert r.status_code == 200, r.text
    assert {o["status"] for o in r.json()["documents"]} <= {"ok", "unchanged"}
    world.docs.setdefault(tenant, {}).update({d["id"]: d["mark"] for d in docs})
    world.texts.setdefault(tenant, []).extend(d["text"] for d in docs)


def ask(http: httpx.Client, keyfile: KeyFile, tenant: str, query: str, **body: Any) -> dict[str, Any]:
    r = http.post("/v1/retrieve", json={"query": query, **body}, headers=keyfile.headers(tenant, "app"))
    assert r.status_code == 200, r.text
    return r.json()


def has_word(text: str, word: str) -> bool:
    """``word`` as a whole word (markers are letters + a serial: ``abc1`` must not match inside ``abc12``)."""
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])", text) is not None


def assert_nothing_of(owner_docs: dict[str, str], answer: dict[str, Any], where: str) -> None:
    """No chunk of ``answer`` is one of the owner's documents or carries one of its marker words."""
    for c in answer["chunks"]:
        assert c["document_id"] not in owner_docs, (where, c["document_id"])
        leaked = [m for m in owner_docs.values() if has_word(c["text"], m) or has_word(json.dumps(c["metadata"]), m)]
        assert not leaked, (where, leaked, c["text"])


def comparable(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k not in ("request_id", "timings_ms")}


def scores(answer: dict[str, Any]) -> list[tuple[str, str, float, float]]:
    return [(c["document_id"], c["id"], c["score"], c["provenance"]["fused_score"]) for c in answer["chunks"]]


def same_problem(a: httpx.Response, b: httpx.Response, a_id: str, b_id: str) -> None:
    """Two answers are indistinguishable once each echo of the id the caller sent is replaced."""
    assert a.status_code == b.status_code
    assert a.headers.get("content-type") == b.headers.get("content-type")
    norm_a = a.text.replace(json.dumps(a_id)[1:-1], "<id>").replace(quote(a_id, safe="/"), "<id>").replace(a_id, "<id>")
    norm_b = b.text.replace(json.dumps(b_id)[1:-1], "<id>").replace(quote(b_id, safe="/"), "<id>").replace(b_id, "<id>")
    assert json.loads(norm_a) == json.loads(norm_b), (a.text, b.text)


def scrape(http: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# --- the properties -------------------------------------------------------------------------------------------

@PROPERTY
@given(pair=tenant_pairs(), owner_docs=documents(2, 5), intruder_docs=documents(1, 1),
       picks=st.tuples(st.integers(0, 4), st.integers(0, 4)))
def test_nothing_crosses_from_one_tenant_to_another(runtime, http, keyfile, world, redis_srv, pair, owner_docs,
                                                     intruder_docs, picks):
    """Results, cache, errors, metrics and BM25 statistics: the intruder learns nothing of the owner."""
    RAN["results_cache_metrics_bm25"] = RAN.get("results_cache_metrics_bm25", 0) + 1
    owner, intruder = pair
    note(f"owner={owner!r} intruder={intruder!r}")
    # The intruder's own document and queries over its own words, measured before the owner writes anything.
    ingest(http, keyfile, world, intruder, intruder_docs)
    own_words = intruder_docs[0]["text"].split()
    own_query = " ".join(w for w in own_words if w in VOCAB)
    before = {}
    for mode in ("bm25", "hybrid"):
        runtime.generations.bump(Tenant(intruder))           # recompute, never a cached copy
        answer = ask(http, keyfile, intruder, own_query, mode=mode, top_k=20)
        assert answer["cache"] == "miss"
        before[mode] = scores(answer)

    # The owner writes documents made of the intruder's vocabulary plus markers, and reads them back itself.
    for d in owner_docs:   # the owner's documents share the intruder's terms, many times over
        d["text"] += " " + " ".join(w for w in own_words if w in VOCAB)
    ingest(http, keyfile, world, owner, owner_docs)
    # Everything is drawn up front (``picks``): a failing example replays identically whatever the service state.
    secret, another = owner_docs[picks[0] % len(owner_docs)], owner_docs[picks[1] % len(owner_docs)]
    note(f"secret={secret['id']!r} text={secret['text']!r}")
    mine = ask(http, keyfile, owner, secret["text"], top_k=10)
    assert mine["status"] == "ok" and secret["id"] in {c["document_id"] for c in mine["chunks"]}, mine
    assert ask(http, keyfile, owner, secret["text"], top_k=10)["cache"] == "hit-exact"   # now cached for the owner
    theirs = world.docs[owner]

    m0 = scrape(http)
    # The intruder asks with the owner's exact text, its marker alone, and a paraphrase, in every mode.
    queries = [secret["text"], secret["mark"], f"What does the report say about {secret['mark']}?", another["text"]]
    for i, q in enumerate(queries):
        for mode in ("hybrid", "bm25", "dense"):
            answer = ask(http, keyfile, intruder, q, mode=mode, top_k=10)
            assert_nothing_of(theirs, answer, f"query {i} mode {mode}")
            if i == 0 and mode == "hybrid":
                assert answer["cache"] == "miss", "the owner's cached answer was offered to another tenant"
    # Asked again (now possibly cached in the intruder's own scope): still nothing of the owner.
    assert_nothing_of(theirs, ask(http, keyfile, intruder, secret["text"], top_k=10), "repeat")
    # A filter naming the owner's document answers like a filter naming nothing at all.
    named = ask(http, keyfile, intruder, secret["text"], filters={"document_id": secret["id"]}, mode="bm25")
    nothing = ask(http, keyfile, intruder, secret["text"], filters={"document_id": f"{secret['id']}-x"}, mode="bm25")
    assert named["chunks"] == [] and comparable(named) == comparable(nothing)

    # Documents by id: the owner's ids are not there for the intruder, and the answers leak no existence.
    admin = keyfile.headers(intruder, "admin")
    missing = f"{secret['id']}-gone"
    for method in ("DELETE", "GET"):
        hit = http.request(method, f"/v1/documents/{quote(secret['id'], safe='/')}", headers=admin)
        miss = http.request(method, f"/v1/documents/{quote(missing, safe='/')}", headers=admin)
        same_problem(hit, miss, secret["id"], missing)
        if method == "DELETE":
            assert hit.status_code == 404 and hit.json()["code"] == "document_not_found"
        assert not has_word(hit.text, secret["mark"])
    listed = http.get("/v1/documents", params={"limit": 500}, headers=admin).json()
    assert not {d["id"] for d in listed["documents"]} & set(theirs)
    m1 = scrape(http)

    # The owner's document survived the intruder's DELETE.
    assert secret["id"] in {c["document_id"] for c in ask(http, keyfile, owner, secret["text"], mode="bm25")["chunks"]}

    # BM25 statistics: the intruder's scores did not move although the owner now holds its words many times.
    for mode in ("bm25", "hybrid"):
        runtime.generations.bump(Tenant(intruder))
        answer = ask(http, keyfile, intruder, own_query, mode=mode, top_k=20)
        assert answer["cache"] == "miss"
        assert scores(answer) == before[mode], mode
        assert_nothing_of(theirs, answer, f"own query {mode}")

    # Metrics: the intruder's requests moved only series of its own tenant, and no label carries data.
    for key, value in m1.items():
        labels = dict(key[1])
        if "tenant" in labels and m0.get(key) != value:
            assert labels["tenant"] == intruder, key
        for v in labels.values():
            assert not any(has_word(v, m) for m in theirs.values()) and v not in theirs and v != secret["text"], key
    tenants_labelled = {dict(k[1])["tenant"] for k in m1 if "tenant" in dict(k[1])}
    assert tenants_labelled <= set(world.docs), tenants_labelled

    # Redis: every cache, limiter and generation key is under its tenant's hash tag; entries hold their tenant only.
    check_redis(redis_srv, world)


def check_redis(redis_srv: RedisServer, world: World) -> None:
    r = redis_srv.client()
    tagged = re.compile(rb"^fathom:(ans|rl|gen):\{([a-z0-9_-]+)\}(:|$)")
    for key in r.scan_iter(count=1000):
        if key.startswith((b"fathom:job:", b"fathom:jobs:", b"fathom:lock:reindex:")):
            continue   # job records carry their tenant and are checked on read (test_job_ids_are_not_shared)
        m = tagged.match(key)
        assert m, f"a key outside the tenant-tagged families: {key!r}"
        tenant = m.group(2).decode()
        assert tenant in world.docs, key
        if m.group(1) == b"ans" and r.type(key) == b"string":
            entry = json.loads(r.get(key))
            assert entry["tenant"] == tenant
            others = {m for t, docs in world.docs.items() if t != tenant for m in docs.values()}
            for c in entry["answer"]["chunks"]:
                assert c["document_id"] in world.docs[tenant], (key, c["document_id"])
                assert not [m for m in others if has_word(c["text"], m)], key


@settings(max_examples=12, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(pair=tenant_pairs(), docs=documents(1, 1))
def test_job_ids_are_not_shared(runtime, http, keyfile, world, pair, docs):
    """A job id is 404 ``job_not_found`` for every other tenant, read or cancelled, exactly like an unknown id."""
    RAN["jobs"] = RAN.get("jobs", 0) + 1
    owner, intruder = pair
    if owner not in world.docs:
        ingest(http, keyfile, world, owner, docs)
    keyfile.headers(intruder, "admin")
    world.docs.setdefault(intruder, {})
    r = http.post("/v1/admin/reindex", headers=keyfile.headers(owner, "admin"))
    if r.status_code == 409:   # the owner's previous reindex still holds the tenant: that job is the one to hide
        job_id = r.json()["job_id"]
    else:
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
    assert http.get(f"/v1/admin/jobs/{job_id}", headers=keyfile.headers(owner, "admin")).status_code == 200
    unknown = uuid.uuid4().hex if len(job_id) == 32 else str(uuid.uuid4())
    admin = keyfile.headers(intruder, "admin")
    for path in ("/v1/admin/jobs/{}", "/v1/admin/jobs/{}/cancel"):
        method = "POST" if path.endswith("cancel") else "GET"
        theirs = http.request(method, path.format(job_id), headers=admin)
        never = http.request(method, path.format(unknown), headers=admin)
        assert theirs.status_code == 404 and theirs.json()["code"] == "job_not_found"
        same_problem(theirs, never, job_id, unknown)
    # The intruder's cancel did nothing: the owner's job runs (or ran) on.
    job = http.get(f"/v1/admin/jobs/{job_id}", headers=keyfile.headers(owner, "admin")).json()
    assert job["status"] != "cancelled" and not job.get("cancel_requested")


@pytest.mark.parametrize("first,second", [("x", "x__v1"), ("x__v1", "x")])
def test_server_store_collection_names_never_collide_across_tenants(first, second):
    """Both tenants can be written and searched on the server backend, each seeing only its own chunk.

    Found by the near-collision tenant ids above (``owner + "__v1"``): with aliases named ``<prefix>__<tenant>``,
    tenant ``x__v1``'s alias was tenant ``x``'s v1 collection and one of the two could not be created or served.
    qdrant-client's local mode runs the same adapter code as a real cluster.
    """
    import numpy as np

    from fathom.retrieval.bm25 import Bm25Encoder
    from fathom.retrieval.store.contract import ChunkPoint, IndexLayout, IndexRef, SearchRequest
    from fathom.retrieval.store.server_store import ServerStore

    store, enc = ServerStore.from_url(":memory:"), Bm25Encoder()
    for tid in (first, second):
        ref = IndexRef(Tenant(tid), 1)
        store.create_index(ref, IndexLayout(dense_dim=4))
        store.activate(ref)
        store.upsert(ref, [ChunkPoint(id=str(uuid.uuid4()), dense=np.ones(4, dtype=np.float32),
                                      sparse=enc.encode_document(f"shared words of {tid}", 4),
                                      payload={"tenant_id": tid, "document_id": f"{tid}-doc", "text": tid})])
    for tid in (first, second):
        hits = store.search(SearchRequest(tenant=Tenant(tid), mode="bm25", limit=5, sparse=enc.encode_query("shared")))
        assert [h.document_id for h in hits] == [f"{tid}-doc"]
    assert {t.id for t in store.tenants()} == {first, second}
