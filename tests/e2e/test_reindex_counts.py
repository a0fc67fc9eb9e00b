"""After a re-chunking reindex (and a rollback), the registry describes the live version.

30 SciFact abstracts are ingested with the default chunking, then ``POST /v1/admin/reindex
{"max_chunk_tokens": 128}`` rebuilds them into smaller chunks. After the swap every document's
``chunk_count`` (``GET /v1/documents``) must equal its chunks in the live index version, and their sum the
version's size; the same after a write and a delete made since the swap, and after the rollback to the
previous version (whose chunking differs again). Before the fix the registry kept the counts of the
version it was written into: 735 chunks live against 491 recorded in the issue's run.
"""

from __future__ import annotations

from itertools import islice

import pytest

from fathom.benchmarks.datasets import load_beir
from fathom.retrieval.store.contract import IndexRef
from fathom.retrieval.tenancy import Tenant
from fathom.service.app import create_app
from fathom.service.runtime import Runtime
from tests.jobs_support import job_settings, wait_job
from tests.support import Keys, client, live_server

TENANT = "recount"


def audit(c, headers, rt: Runtime) -> dict[str, int]:
    tenant = Tenant(TENANT)
    live = rt.store.live_version(tenant)
    docs = c.get("/v1/documents", params={"limit": 500}, headers=headers).json()["documents"]
    counts = {d["id"]: d["chunk_count"] for d in docs if d["status"] == "ok"}
    ref = IndexRef(tenant, live)
    in_index = {doc: rt.store.count(ref, document_id=doc) for doc in counts}
    assert counts == in_index, {d: (counts[d], in_index[d]) for d in counts if counts[d] != in_index[d]}
    assert sum(counts.values()) == rt.store.count(ref), (sum(counts.values()), rt.store.count(ref))
    return counts


def test_registry_chunk_counts_follow_the_live_version(tmp_path, base_settings, models_ready, scifact_dir):
    keys = Keys().add_tenants([TENANT])
    headers = keys.headers(f"{TENANT}-admin")
    abstracts = [{"id": d.id, "title": d.title, "text": f"{d.title}\n\n{d.text}"}
                 for d in islice(load_beir(scifact_dir).corpus(), 30)]
    rt = Runtime.open(job_settings(base_settings, tmp_path / "state", keys))
    try:
        with live_server(create_app(rt.settings, rt)) as url, client(url) as c:
            assert c.post("/v1/documents", json={"documents": abstracts}, headers=headers).status_code == 200
            before = audit(c, headers, rt)

            r = c.post("/v1/admin/reindex", json={"max_chunk_tokens": 128}, headers=headers)
            assert r.status_code == 202, r.text
            job = wait_job(c, headers, r.json()["id"])
            assert job["status"] == "succeeded", job
            after = audit(c, headers, rt)
            assert sum(after.values()) > sum(before.values())     # smaller chunks: more of them

            changed = {**abstracts[0], "text": abstracts[0]["text"] + " " + abstracts[1]["text"]}
            assert c.post("/v1/documents", json={"documents": [changed]}, headers=headers).status_code == 200
            assert c.delete(f"/v1/documents/{abstracts[2]['id']}", headers=headers).status_code == 204
            audit(c, headers, rt)

            r = c.post("/v1/admin/rollback", headers=headers)
            assert r.status_code == 200, r.text
            rolled = audit(c, headers, rt)
            assert abstracts[2]["id"] not in rolled
            assert {d: n for d, n in rolled.items() if d != abstracts[0]["id"]} == \
                {d: n for d, n in before.items() if d not in (abstracts[0]["id"], abstracts[2]["id"])}
    finally:
        rt.close()


@pytest.fixture(autouse=True)
def _quiet(caplog):
    caplog.set_level("WARNING")
