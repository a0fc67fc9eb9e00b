"""Bad input over real HTTP: every malformed request is a clear 4xx problem+json, and nothing is half-written.

Oversized and blank queries, invalid UTF-8, bodies over the upload limit (declared and chunked), zip bombs
disguised as DOCX and XLSX, path traversal in file names and ids, malformed tags and unknown fields. After
every rejected request the tenant's documents are what they were before: a request refused at the edge
writes nothing, and a document refused by ingestion is recorded as ``failed`` with its reason and no chunks
(that record is how the caller finds out later) while the searchable documents stay the same.
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from fathom.service.app import create_app
from fathom.service.problems import MEDIA_TYPE, PROBLEM_BASE
from fathom.service.runtime import Runtime
from tests.jobs_support import job_settings
from tests.support import Keys, client, live_server

MAX_REQUEST = 4 * 1024 * 1024          # service.max_request_bytes: the whole upload
MAX_DOCUMENT = 2 * 1024 * 1024         # ingest.max_document_bytes: one file (a zip bomb is far smaller)
SEED = [{"id": "handbook/leave", "text": "Employees accrue two days of paid leave per month; unused days carry over."},
        {"id": "handbook/travel", "text": "Train travel is preferred for trips under five hours; book through the portal."}]


@pytest.fixture(scope="module")
def keys() -> Keys:
    k = Keys()
    k.add("admin", "bad", "admin")
    k.add("app", "bad", "app")
    return k


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad-input") / "state"


@pytest.fixture(scope="module")
def base_url(base_settings, models_ready, keys, state_dir):
    settings = job_settings(base_settings, state_dir, keys,
                            service={"api_keys": keys.json(), "api_keys_file": None, "max_request_bytes": MAX_REQUEST},
                            ingest={"embed_mpnet": False, "max_document_bytes": MAX_DOCUMENT})
    rt = Runtime.open(settings)
    try:
        with live_server(create_app(settings, rt)) as url:
            with client(url) as c:
                r = c.post("/v1/documents", json={"documents": SEED}, headers=keys.headers("admin"))
                assert r.status_code == 200, r.text
            yield url
    finally:
        rt.close()


@pytest.fixture()
def c(base_url):
    with client(base_url) as http:
        yield http


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The one error format: RFC 9457 members plus a stable code, served as application/problem+json."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith(MEDIA_TYPE), r.headers["content-type"]
    body = r.json()
    assert body["code"] == code, body
    assert body["type"] == PROBLEM_BASE + code and body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body.get("detail"), str) and body["detail"], body
    return body


def documents(c: httpx.Client, keys: Keys) -> dict[str, tuple[str, int]]:
    """The tenant's documents: id -> (status, chunk count)."""
    r = c.get("/v1/documents", params={"limit": 500}, headers=keys.headers("admin"))
    assert r.status_code == 200, r.text
    return {d["id"]: (d["status"], d["chunk_count"]) for d in r.json()["documents"]}


def searchable(docs: dict[str, tuple[str, int]]) -> dict[str, tuple[str, int]]:
    return {k: v for k, v in docs.items() if v[0] == "ok"}


def multipart(parts: list[tuple[str, bytes, bytes | None]]) -> tuple[bytes, str]:
    """A multipart/form-data body written byte for byte (file names are sent exactly as given, NUL included):
    parts are (field name, value, file name or None)."""
    boundary = "fathom-bad-input-boundary"
    out = io.BytesIO()
    for name, value, filename in parts:
        out.write(f"--{boundary}\r\n".encode())
        disposition = b'Content-Disposition: form-data; name="' + name.encode() + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        out.write(disposition + b"\r\n")
        if filename is not None:
            out.write(b"Content-Type: application/octet-stream\r\n")
        out.write(b"\r\n" + value + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


# --------------------------------------------------------------------------- queries


def test_oversized_query(c, keys):
    r = c.post("/v1/retrieve", json={"query": "bees " * 401}, headers=keys.headers("app"))     # 2,005 chars > 2,000
    body = assert_problem(r, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", "query"] and "2000" in body["detail"]
    r = c.post("/v1/retrieve", json={"query": "x" * 70_000}, headers=keys.headers("app"))   # past the body limit
    assert assert_problem(r, 413, "payload_too_large")["limit_bytes"] == 64 * 1024


@pytest.mark.parametrize("query", ["", " ", "   \n\t  ", "\u3000\u00a0"])
def test_empty_or_blank_query(c, keys, query):
    body = assert_problem(c.post("/v1/retrieve", json={"query": query}, headers=keys.headers("app")), 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", "query"]


def test_missing_or_mistyped_fields(c, keys):
    for payload in ({}, {"query": None}, {"query": ["bees"]}, {"query": "bees", "top_k": "five"},
                    {"query": "bees", "top_k": 0}, {"query": "bees", "filters": {"tags.team": {"$ne": "hr"}}},
                    {"query": "bees", "mode": "semantic"}, []):
        assert_problem(c.post("/v1/retrieve", json=payload, headers=keys.headers("app")), 422, "validation_error")


def test_invalid_utf8_and_broken_json(c, keys):
    app = keys.headers("app", **{"Content-Type": "application/json"})
    admin = keys.headers("admin", **{"Content-Type": "application/json"})
    before = documents(c, keys)
    # \xe9 alone is Latin-1 "é", invalid as UTF-8; \xff never occurs in UTF-8.
    assert_problem(c.post("/v1/retrieve", content=b'{"query": "caf\xe9 au lait"}', headers=app), 400, "invalid_json")
    assert_problem(c.post("/v1/retrieve", content=b'{"query": "\xff\xfe"}', headers=app), 400, "invalid_json")
    assert_problem(c.post("/v1/retrieve", content=b'{"query": "bees"', headers=app), 400, "invalid_json")
    body = b'{"documents": [{"id": "latin1", "text": "caf\xe9 cr\xe8me"}]}'
    assert_problem(c.post("/v1/documents", content=body, headers=admin), 400, "invalid_json")
    assert_problem(c.post("/v1/documents", content=b'{"documents": [', headers=admin), 400, "invalid_json")
    assert documents(c, keys) == before


def test_lone_surrogates_are_not_a_server_error(c, keys):
    """Valid JSON, invalid Unicode ("\\ud800" escapes a lone surrogate): refused, never a 500 from an encoder."""
    app = keys.headers("app", **{"Content-Type": "application/json"})
    r = c.post("/v1/retrieve", content=b'{"query": "bees \\ud800 dance"}', headers=app)
    assert_problem(r, 422, "validation_error")
    before = documents(c, keys)
    admin = keys.headers("admin", **{"Content-Type": "application/json"})
    r = c.post("/v1/documents", content=b'{"documents": [{"id": "sur\\udfffrogate", "text": "x \\ud83d y"}]}', headers=admin)
    assert_problem(r, 422, "validation_error")
    assert documents(c, keys) == before


# --------------------------------------------------------------------------- uploads


def test_upload_over_the_request_limit_is_413_and_writes_nothing(c, keys):
    before = documents(c, keys)
    big = b"lorem ipsum dolor sit amet " * (MAX_REQUEST // 27 + 1000)
    r = c.post("/v1/documents", files=[("files", ("big.txt", big))], headers=keys.headers("admin"))
    assert assert_problem(r, 413, "payload_too_large")["limit_bytes"] == MAX_REQUEST
    # Without a Content-Length (chunked), the body is counted as it streams and refused past the limit.
    payload, content_type = multipart([("files", big, b"big.txt")])
    chunks = (payload[i:i + 256 * 1024] for i in range(0, len(payload), 256 * 1024))
    r = c.post("/v1/documents", content=chunks, headers=keys.headers("admin", **{"Content-Type": content_type}))
    assert_problem(r, 413, "payload_too_large")
    # The same for JSON texts.
    r = c.post("/v1/documents", json={"documents": [{"id": "big", "text": big.decode()}]}, headers=keys.headers("admin"))
    assert_problem(r, 413, "payload_too_large")
    assert documents(c, keys) == before


def test_a_file_over_the_document_limit_fails_alone(c, keys):
    before = documents(c, keys)
    r = c.post("/v1/documents", files=[("files", ("large.txt", b"words and more words " * (MAX_DOCUMENT // 21 + 10)))],
               headers=keys.headers("admin"))
    assert r.status_code == 207 and r.json()["documents"][0]["reason"] == "too_large"
    assert documents(c, keys) == before          # refused at the edge: not even a failed record


def zip_bomb(path: str, megabytes: int, extra: dict[str, bytes]) -> bytes:
    """A tiny zip whose one member inflates to ``megabytes`` MiB of zeros (deflate: ~1000x), streamed so the
    test never holds the inflated bytes either."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in extra.items():
            archive.writestr(name, data)
        with archive.open(path, "w", force_zip64=True) as member:
            block = b"\0" * (1 << 20)
            for _ in range(megabytes):
                member.write(block)
    return buf.getvalue()


OOXML_TYPES = b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'


@pytest.mark.parametrize("filename,member,megabytes,limit", [
    ("report.docx", "word/document.xml", 300, "max_archive_uncompressed_bytes"),     # over the total size
    ("figures.xlsx", "xl/worksheets/sheet1.xml", 200, "max_archive_ratio"),          # under it, but ~1000x
])
def test_zip_bombs_are_refused_without_inflating(c, keys, filename, member, megabytes, limit):
    bomb = zip_bomb(member, megabytes, {"[Content_Types].xml": OOXML_TYPES})
    assert len(bomb) < MAX_DOCUMENT // 4      # small enough to pass every byte limit
    before = documents(c, keys)
    started = time.monotonic()
    r = c.post("/v1/documents", files=[("files", (filename, bomb))], headers=keys.headers("admin"))
    elapsed = time.monotonic() - started
    assert r.status_code == 207, r.text
    outcome = r.json()["documents"][0]
    assert (outcome["id"], outcome["status"], outcome["reason"]) == (filename, "failed", "decompression_bomb")
    assert limit in outcome["error"] and outcome["chunks"] == 0
    # Read from the zip's directory only: inflating 200-300 MiB and parsing it would take far longer.
    assert elapsed < 20, elapsed
    after = documents(c, keys)
    assert searchable(after) == searchable(before)
    assert after[filename] == ("failed", 0)


def test_the_archive_guard_passes_every_real_office_document(data_dir):
    """The 19 DOCX/XLSX/PPTX/ODT/EPUB fixtures (up to a 5.5 MB, 872-page handbook; ratios up to 32x) pass."""
    from fathom.ingest.parse import _ZIP_FORMATS, _check_archive

    files = [p for p in sorted((data_dir / "docs").rglob("*")) if p.suffix.lstrip(".").lower() in _ZIP_FORMATS]
    if not files:
        pytest.skip(f"no office fixtures under {data_dir / 'docs'}")
    for path in files:
        _check_archive(path.read_bytes(), path.suffix.lstrip(".").lower())     # raises IngestError on a refusal


TRAVERSALS = [b"../../etc/passwd", b"/etc/passwd", b"..\\..\\windows\\win.ini", b"notes/../../../escape.txt",
              b"nul\x00byte.txt", b"./hidden.txt", b"/"]


def test_path_traversal_file_names_are_refused_as_ids(c, keys, state_dir):
    before = documents(c, keys)
    payload, content_type = multipart([("files", b"Some ordinary text about quarterly budgets and plans.", name)
                                       for name in TRAVERSALS])
    r = c.post("/v1/documents", content=payload, headers=keys.headers("admin", **{"Content-Type": content_type}))
    assert r.status_code == 207, r.text
    outcomes = r.json()["documents"]
    assert len(outcomes) == len(TRAVERSALS)
    assert [(o["id"], o["status"], o["reason"]) for o in outcomes] == [
        (name.decode(), "failed", "invalid_document_id") for name in TRAVERSALS]
    assert all(o["error"] for o in outcomes)
    assert documents(c, keys) == before


@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "/abs/path", "a/./b", "a/..", "dir\\file", "nul\x00id", "D:evil"])
def test_path_traversal_ids_in_json_are_refused(c, keys, bad_id):
    before = documents(c, keys)
    r = c.post("/v1/documents", json={"documents": [{"id": bad_id, "text": "An ordinary sentence about budgets."}]},
               headers=keys.headers("admin"))
    assert r.status_code == 207, r.text
    assert r.json()["documents"][0]["reason"] == "invalid_document_id"
    assert documents(c, keys) == before


def written(marker: str, state_dir: Path) -> list[Path]:
    """Files named after ``marker`` in the state dir, the test's temporary tree, or where a traversal would land."""
    found = [p for root in (state_dir, state_dir.parent.parent) for p in root.rglob(f"*{marker}*")]
    return found + [p for p in (Path("/tmp") / f"{marker}.txt", Path.cwd() / f"{marker}.txt") if p.exists()]


def test_a_traversal_file_name_with_a_safe_id_is_neutralised(c, keys, state_dir):
    """The file name only ever names the source and picks the parser; nothing is written under it."""
    marker = f"fathom-escape-{os.getpid()}-{time.monotonic_ns()}"
    name = f"../../../../tmp/{marker}.txt".encode()
    payload, content_type = multipart([("files", b"The escape hatch on deck three is inspected every spring.", name),
                                       ("document_ids", b"safe/escape-hatch", None)])
    r = c.post("/v1/documents", content=payload, headers=keys.headers("admin", **{"Content-Type": content_type}))
    assert r.status_code == 200 and r.json()["documents"][0]["status"] == "ok", r.text
    r = c.post("/v1/retrieve", json={"query": "When is the escape hatch on deck three inspected?", "top_k": 1},
               headers=keys.headers("app"))
    top = r.json()["chunks"][0]
    assert top["document_id"] == "safe/escape-hatch" and top["metadata"]["source"] == f"{marker}.txt"
    assert not written(marker, state_dir)
    assert c.delete("/v1/documents/safe/escape-hatch", headers=keys.headers("admin")).status_code == 204
    # A Windows path ("C:\\...", as old browsers sent) is cut to its base name by the multipart parser itself.
    payload, content_type = multipart([("files", b"The boiler room key hangs behind the second door.",
                                        f"C:\\Windows\\{marker}.txt".encode())])
    r = c.post("/v1/documents", content=payload, headers=keys.headers("admin", **{"Content-Type": content_type}))
    assert r.status_code == 200 and r.json()["documents"][0]["id"] == f"{marker}.txt", r.text
    assert not written(marker, state_dir)
    assert c.delete(f"/v1/documents/{marker}.txt", headers=keys.headers("admin")).status_code == 204


# --------------------------------------------------------------------------- tags and unknown fields


@pytest.mark.parametrize("tags", [
    {"team": ["hr", "it"]}, {"team": {"name": "hr"}}, {"team": None},       # wrong value types
    {f"k{i}": "v" for i in range(33)},                                          # too many
    {"k" * 65: "v"}, {"": "v"}, {"Bad Key": "v"}, {"team/../x": "v"},           # bad keys
    {"team": "v" * 257},                                                        # value too long
    "team=hr", ["team", "hr"],                                                  # not an object
])
def test_malformed_tags_in_json_are_422(c, keys, tags):
    before = documents(c, keys)
    r = c.post("/v1/documents", json={"documents": [{"id": "tagged", "text": "Text with tags.", "tags": tags}]},
               headers=keys.headers("admin"))
    assert_problem(r, 422, "validation_error")
    assert documents(c, keys) == before


@pytest.mark.parametrize("raw", ['{"team": ["hr"]}', json.dumps({f"k{i}": "v" for i in range(33)}),
                                 json.dumps({"k" * 65: "v"}), '{"Team": "hr"}', json.dumps({"team": "v" * 257}),
                                 "[1, 2]", "team=hr", '{"team": '])
def test_malformed_tags_in_uploads_are_422(c, keys, raw):
    before = documents(c, keys)
    r = c.post("/v1/documents", files=[("files", ("note.txt", b"A short note about the team offsite."))],
               data={"tags": raw}, headers=keys.headers("admin"))
    assert_problem(r, 422, "invalid_tags")
    assert documents(c, keys) == before


@pytest.mark.parametrize("method,path,payload,who", [
    ("POST", "/v1/retrieve", {"query": "bees", "tenant": "other"}, "app"),
    ("POST", "/v1/retrieve", {"query": "bees", "top_k": 3, "debug": True}, "app"),
    ("POST", "/v1/documents", {"documents": [{"id": "x", "text": "Some text."}], "tenant": "other"}, "admin"),
    ("POST", "/v1/documents", {"documents": [{"id": "x", "text": "Some text.", "owner": "me"}]}, "admin"),
    ("POST", "/v1/admin/reindex", {"chunker": "fixed", "shards": 4}, "admin"),
    ("PUT", "/v1/admin/golden-set", {"queries": [{"query": "q", "expected": ["d"], "weight": 2}]}, "admin"),
    ("PUT", "/v1/admin/golden-set", {"queries": [{"query": "q", "expected": ["d"]}], "version": 2}, "admin"),
])
def test_unknown_fields_are_422(c, keys, method, path, payload, who):
    before = documents(c, keys)
    body = assert_problem(c.request(method, path, json=payload, headers=keys.headers(who)), 422, "validation_error")
    assert any(e["type"] == "extra_forbidden" for e in body["errors"]), body
    assert documents(c, keys) == before
    assert c.get("/v1/admin/golden-set", headers=keys.headers("admin")).json()["source"] is None


# --------------------------------------------------------------------------- regressions found by schemathesis


def test_a_garbage_cursor_is_422_not_500(c, keys):
    for cursor in ("Ò\x1cñ·\x83¬/²", "%%%", "ok-but-not-base64-!!", "\u00e9t\u00e9"):
        r = c.get("/v1/documents", params={"cursor": cursor}, headers=keys.headers("admin"))
        assert_problem(r, 422, "invalid_cursor")


@pytest.mark.parametrize("queries", [[{"query": "   ", "expected": ["d"]}], [{"query": "\x1c\x1d", "expected": ["d"]}],
                                     [{"query": "q", "expected": [""]}], [{"query": "q", "expected": []}], []])
def test_a_golden_set_the_gate_could_not_read_is_refused(c, keys, queries):
    """PUT used to store blank queries that GET (and the reindex gate) then reported as an invalid set."""
    r = c.put("/v1/admin/golden-set", json={"queries": queries}, headers=keys.headers("admin"))
    assert r.status_code == 422 and r.json()["code"] in ("validation_error", "golden_set_invalid"), r.text
    assert_problem(r, 422, r.json()["code"])
    r = c.get("/v1/admin/golden-set", headers=keys.headers("admin"))
    assert r.status_code == 200 and r.json()["source"] is None
