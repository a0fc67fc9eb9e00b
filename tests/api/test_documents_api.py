"""/v1/documents over real HTTP: uploads (files and JSON), per-document outcomes, listing, deletion, roles.

Real parser, models and Edge shards; files come from the bundled sample
corpus and a few broken ones written here.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from fathom.service.app import create_app
from fathom.service.cli import SAMPLE_CORPUS
from fathom.service.runtime import Runtime
from tests.jobs_support import job_settings
from tests.support import Keys, client, live_server

MAX_DOC_BYTES = 200_000
MAX_BATCH = 12


@pytest.fixture(scope="module")
def keys() -> Keys:
    k = Keys()
    k.add("alpha-admin", "alpha", "admin")
    k.add("alpha-app", "alpha", "app")
    k.add("beta-admin", "beta", "admin")
    k.add("operator", None, "operator")
    return k


@pytest.fixture(scope="module")
def base_url(tmp_path_factory, base_settings, models_ready, keys):
    settings = job_settings(base_settings, tmp_path_factory.mktemp("docs-state"), keys,
                            ingest={"embed_mpnet": False, "max_document_bytes": MAX_DOC_BYTES,
                                    "max_batch_documents": MAX_BATCH})
    rt = Runtime.open(settings)
    with live_server(create_app(settings, rt)) as url:
        yield url
    rt.close()


def sample_files() -> list[tuple[str, tuple[str, bytes]]]:
    return [("files", (p.name, p.read_bytes())) for p in sorted(SAMPLE_CORPUS.iterdir())]


@pytest.fixture(scope="module")
def uploaded(base_url, keys):
    """The sample corpus plus four bad files, uploaded once in one multipart batch."""
    bad = [("files", ("empty.pdf", b"")), ("files", ("broken.docx", b"PK\x03\x04 not a zip archive" * 20)),
           ("files", ("huge.txt", b"lorem ipsum " * (MAX_DOC_BYTES // 10))), ("files", ("honeybees.md", b"# again"))]
    with client(base_url) as c:
        r = c.post("/v1/documents", files=sample_files() + bad, data={"tags": '{"corpus": "sample"}'},
                   headers=keys.headers("alpha-admin"))
    return r


def test_upload_reports_every_document_in_order(uploaded):
    assert uploaded.status_code == 207
    body = uploaded.json()
    outcomes = body["documents"]
    names = sorted(p.name for p in SAMPLE_CORPUS.iterdir())
    assert [o["id"] for o in outcomes] == names + ["empty.pdf", "broken.docx", "huge.txt", "honeybees.md"]
    assert all(o["status"] == "ok" and o["chunks"] > 0 and o["doc_version"] == 1 for o in outcomes[:len(names)])
    assert [(o["status"], o["reason"]) for o in outcomes[len(names):]] == [
        ("failed", "empty_file"), ("failed", "corrupt"), ("failed", "too_large"), ("failed", "duplicate_in_batch")]
    assert all(o["error"] for o in outcomes[len(names):])
    assert body["summary"] == {"ok": len(names), "unchanged": 0, "failed": 4} and body["index_version"] == 1


def test_uploaded_documents_are_retrievable_and_reupload_is_unchanged(base_url, keys, uploaded):
    with client(base_url) as c:
        r = c.post("/v1/retrieve", json={"query": "How do honeybees tell each other where flowers are?", "top_k": 3},
                   headers=keys.headers("alpha-app"))
        top = r.json()["chunks"][0]
        assert top["document_id"] == "honeybees.md" and top["metadata"]["tags"] == {"corpus": "sample"}
        again = c.post("/v1/documents", files=[("files", ("honeybees.md", (SAMPLE_CORPUS / "honeybees.md").read_bytes()))],
                       data={"tags": '{"corpus": "sample"}'}, headers=keys.headers("alpha-admin"))
    assert again.status_code == 200
    assert again.json()["documents"] == [{"id": "honeybees.md", "status": "unchanged", "reason": None, "error": None,
                                          "chunks": 0, "doc_version": 1}]


def test_json_documents_with_slashes_list_and_delete(base_url, keys, uploaded):
    docs = [{"id": "notes/2024/plan.txt", "title": "Relocation plan", "tags": {"team": "facilities"},
             "text": "The archive room moves to the third floor in March; the shredder contract ends in April."},
            {"id": "notes/2024/budget.txt", "text": "The facilities budget for the move is forty thousand euros."}]
    admin = keys.headers("alpha-admin")
    with client(base_url) as c:
        r = c.post("/v1/documents", json={"documents": docs}, headers=admin)
        assert r.status_code == 200 and [o["status"] for o in r.json()["documents"]] == ["ok", "ok"]
        hit = c.post("/v1/retrieve", json={"query": "When does the archive room move?", "filters": {"tags.team": "facilities"}},
                     headers=keys.headers("alpha-app")).json()
        assert hit["chunks"][0]["document_id"] == "notes/2024/plan.txt"

        # Pages of two, walked with the cursor, cover every document exactly once.
        seen, cursor = [], None
        while True:
            page = c.get("/v1/documents", params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=admin).json()
            seen += [d["id"] for d in page["documents"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(seen) and len(seen) == len(set(seen))
        assert {"notes/2024/plan.txt", "honeybees.md", "empty.pdf", "broken.docx"} <= set(seen)
        assert "huge.txt" not in seen   # refused at the edge: reported in the answer, never ingested
        failed = c.get("/v1/documents", params={"status": "failed"}, headers=admin).json()
        assert {(d["id"], d["reason"]) for d in failed["documents"]} == {("empty.pdf", "empty_file"), ("broken.docx", "corrupt")}
        plan = next(d for d in c.get("/v1/documents", headers=admin).json()["documents"] if d["id"] == "notes/2024/plan.txt")
        assert plan["status"] == "ok" and plan["chunk_count"] >= 1 and plan["doc_version"] == 1
        assert plan["tags"] == {"team": "facilities"} and plan["title"] == "Relocation plan"

        assert c.delete("/v1/documents/notes/2024/plan.txt", headers=admin).status_code == 204
        assert c.delete("/v1/documents/" + quote("notes/2024/budget.txt", safe=""), headers=admin).status_code == 204
        gone = c.post("/v1/retrieve", json={"query": "When does the archive room move?",
                                            "filters": {"tags.team": "facilities"}}, headers=keys.headers("alpha-app")).json()
        assert gone["chunks"] == []
        listed = {d["id"] for d in c.get("/v1/documents", params={"limit": 500}, headers=admin).json()["documents"]}
        assert not listed & {"notes/2024/plan.txt", "notes/2024/budget.txt"}
        again = c.delete("/v1/documents/notes/2024/plan.txt", headers=admin)
        assert again.status_code == 404 and again.json()["code"] == "document_not_found"
        assert again.headers["content-type"].startswith("application/problem+json")


def test_roles_and_tenants(base_url, keys, uploaded):
    text = {"documents": [{"id": "beta-only", "text": "Beta's quarterly report mentions the Lisbon warehouse lease."}]}
    with client(base_url) as c:
        app = keys.headers("alpha-app")
        for method, path in [("POST", "/v1/documents"), ("GET", "/v1/documents"), ("DELETE", "/v1/documents/honeybees.md"),
                             ("POST", "/v1/admin/reindex"), ("GET", "/v1/admin/index"), ("POST", "/v1/admin/rollback")]:
            r = c.request(method, path, headers=app, json=text if method == "POST" else None)
            assert r.status_code == 403 and r.json()["code"] == "forbidden_role", (method, path)
        # An admin acts on its own tenant only; the tenant is never read from the body.
        r = c.post("/v1/documents", json=text, headers=keys.headers("alpha-admin", **{"X-Fathom-Tenant": "beta"}))
        assert r.status_code == 403 and r.json()["code"] == "forbidden_tenant"
        r = c.post("/v1/documents", json={**text, "tenant": "beta"}, headers=keys.headers("alpha-admin"))
        assert r.status_code == 422 and r.json()["code"] == "validation_error"
        # An operator acts on the tenant it names.
        assert c.post("/v1/documents", json=text, headers=keys.headers("operator")).json()["code"] == "tenant_required"
        r = c.post("/v1/documents", json=text, headers=keys.headers("operator", **{"X-Fathom-Tenant": "beta"}))
        assert r.status_code == 200 and r.json()["documents"][0]["status"] == "ok"
        beta = c.get("/v1/documents", headers=keys.headers("beta-admin")).json()
        assert [d["id"] for d in beta["documents"]] == ["beta-only"]
        alpha = c.get("/v1/documents", params={"limit": 500}, headers=keys.headers("alpha-admin")).json()
        assert "beta-only" not in {d["id"] for d in alpha["documents"]}
        r = c.delete("/v1/documents/beta-only", headers=keys.headers("alpha-admin"))
        assert r.status_code == 404     # alpha's admin cannot even tell that beta has it


def test_batch_limits_and_bad_requests(base_url, keys):
    admin = keys.headers("alpha-admin")
    too_many = {"documents": [{"id": f"d{i}", "text": "some text here"} for i in range(MAX_BATCH + 1)]}
    with client(base_url) as c:
        r = c.post("/v1/documents", json=too_many, headers=admin)
        assert r.status_code == 413 and r.json()["code"] == "too_many_documents" and r.json()["limit"] == MAX_BATCH
        r = c.post("/v1/documents", content=b"plain words", headers={**admin, "Content-Type": "text/plain"})
        assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type"
        r = c.post("/v1/documents", files=sample_files()[:1], data={"tags": "[1, 2]"}, headers=admin)
        assert r.status_code == 422 and r.json()["code"] == "invalid_tags"
        r = c.post("/v1/documents", files=sample_files()[:2], data={"document_ids": ["only-one"]}, headers=admin)
        assert r.status_code == 422 and r.json()["code"] == "document_ids_mismatch"
        r = c.post("/v1/documents", content=b"{not json", headers={**admin, "Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["code"] == "invalid_json"
        r = c.get("/v1/documents", params={"cursor": "%%%"}, headers=admin)
        assert r.status_code == 422 and r.json()["code"] == "invalid_cursor"
        r = c.post("/v1/documents", json={"documents": [{"id": "bad-tags", "text": "text", "tags": {"Bad Key": "x"}}]},
                   headers=admin)
        assert r.status_code == 422 and r.json()["code"] == "validation_error"   # malformed tags: the request's fault


def test_openapi_documents_both_body_types_with_examples(base_url):
    with client(base_url) as c:
        spec = c.get("/openapi.json").json()
    post = spec["paths"]["/v1/documents"]["post"]
    content = post["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    assert content["application/json"]["examples"]["text"]["value"]["documents"][0]["id"]
    assert "$ref" not in str(content["application/json"]["schema"])      # self-contained, no dangling $defs
    assert {"200", "207", "413", "415"} <= set(post["responses"])
    assert "/v1/documents/{document_id}" in spec["paths"]
    for path in ("/v1/admin/reindex", "/v1/admin/jobs/{job_id}", "/v1/admin/jobs/{job_id}/cancel", "/v1/admin/index",
                 "/v1/admin/rollback", "/v1/admin/golden-set"):
        assert path in spec["paths"], path
    schemas = spec["components"]["schemas"]
    assert schemas["JobOut"]["examples"][0]["error"]["code"] == "gate_refused"
    assert schemas["IngestResponse"]["examples"] and schemas["DocumentList"]["examples"]
