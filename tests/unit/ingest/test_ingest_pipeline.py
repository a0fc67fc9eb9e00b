"""Ingestion end to end: real documents → chunks with metadata → Edge index, idempotent and loud about failures."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fathom.ingest.chunking import PATH_SEP, FixedSizeChunker, SemanticChunker
from fathom.ingest.document import Element, ParsedDocument, ReasonCode
from fathom.ingest.wiring import build_ingest
from fathom.ingest.ingest_pipeline import IngestItem
from fathom.ingest.pii import PiiScanner, find_pii, iban_ok, luhn_ok
from fathom.retrieval.query_pipeline import RetrievalQuery
from fathom.retrieval.guard import GuardPolicy
from fathom.retrieval.store.contract import IndexRef
from fathom.retrieval.tenancy import Tenant
from fathom.service.cli import SAMPLE_CORPUS, iter_files
from fathom.service.runtime import Runtime
from tests.docs_support import EXPECTED, expected_reason

OPEN = GuardPolicy(0.0, 0.0)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory, base_settings, models_ready):
    settings = base_settings.model_copy(update={
        "state_dir": tmp_path_factory.mktemp("ingest-state"), "registry_url": None,
        "rerank": base_settings.rerank.model_copy(update={"kind": "none"}),
        "ingest": base_settings.ingest.model_copy(update={"embed_mpnet": False}),
    })
    rt = Runtime.open(settings)
    yield rt
    rt.close()


def _ref(rt: Runtime, tenant: Tenant) -> IndexRef:
    return IndexRef(tenant, rt.store.live_version(tenant))


def _snapshot(rt: Runtime, tenant: Tenant) -> dict[str, tuple]:
    return {h.id: (h.document_id, h.payload["doc_version"], h.payload["content_hash"], h.text)
            for h in rt.store.scroll(_ref(rt, tenant))}


def test_every_fixture_is_ingested_or_rejected_with_its_reason(runtime, docs_fixtures):
    # Fixed-size chunks here: the per-file outcome doesn't depend on the chunker, and the 619-page PDF and the
    # 872-page DOCX would otherwise embed tens of thousands of breakpoint sentences. Semantic chunking has its
    # own tests below and is the default everywhere else.
    fixed = runtime.settings.model_copy(update={"ingest": runtime.settings.ingest.model_copy(update={"chunker": "fixed"})})
    pipeline = build_ingest(fixed, runtime.store, runtime.registry, runtime.models, cache=runtime.embedding_cache)
    tenant = Tenant("fixtures")
    items = []
    for name in sorted(EXPECTED):
        try:
            items.append(IngestItem(document_id=name, parsed=docs_fixtures(name)))
        except Exception:   # the parse failed: let the pipeline meet the file itself and report it
            items.append(IngestItem(document_id=name, path=docs_fixtures.root / name))
    report = pipeline.ingest(tenant, items)
    outcomes = {o.document_id: o for o in report.outcomes}
    assert set(outcomes) == set(EXPECTED), "a document was dropped silently"
    for name, expected in EXPECTED.items():
        o, reason = outcomes[name], expected_reason(expected)
        if reason is None:
            assert o.status == "ok" and o.chunks > 0, (name, o)
            assert runtime.store.count(_ref(runtime, tenant), document_id=name) == o.chunks
        else:
            assert o.status == "failed" and o.reason == reason.value, (name, o)
            rec = runtime.registry.get(tenant, name)
            assert rec.status == "failed" and rec.reason == reason.value and rec.error
    counts = runtime.registry.counts(tenant)
    assert counts["ok"] + counts["failed"] == len(EXPECTED)


def test_reingest_computes_nothing_and_changes_nothing(runtime):
    tenant = Tenant("idem")
    items = lambda: [IngestItem(document_id=f.name, path=f) for f in iter_files([SAMPLE_CORPUS])]  # noqa: E731
    first = runtime.ingest.ingest(tenant, items())
    assert first.count("ok") == len(items()) and first.embeddings_computed > 0
    before = _snapshot(runtime, tenant)
    again = runtime.ingest.ingest(tenant, items())
    assert again.count("unchanged") == len(items())
    assert again.embeddings_computed == 0 and again.chunks_written == 0
    assert _snapshot(runtime, tenant) == before


def test_changing_one_document_reembeds_only_its_chunks(runtime):
    tenant = Tenant("change")
    docs = {f.name: f.read_text() for f in iter_files([SAMPLE_CORPUS]) if f.suffix in (".md", ".txt")}
    runtime.ingest.ingest(tenant, [IngestItem(document_id=n, text=t, filename=n) for n, t in docs.items()])
    before = _snapshot(runtime, tenant)
    docs["voyager.md"] = docs["voyager.md"].replace("Golden Record", "Golden Record (a phonograph disc)") + \
        "\n\n## Legacy\n\nBoth spacecraft will drift among the stars for billions of years after their power fails.\n"
    report = runtime.ingest.ingest(tenant, [IngestItem(document_id=n, text=t, filename=n) for n, t in docs.items()])
    assert report.count("ok") == 1 and report.count("unchanged") == len(docs) - 1
    new_chunks = runtime.store.count(_ref(runtime, tenant), document_id="voyager.md")
    assert 0 < report.embeddings_computed <= new_chunks + 20   # its chunks (+ its breakpoint sentences), nothing else
    after = _snapshot(runtime, tenant)
    unchanged = {k: v for k, v in before.items() if v[0] != "voyager.md"}
    assert {k: v for k, v in after.items() if v[0] != "voyager.md"} == unchanged
    assert {v[1] for v in after.values() if v[0] == "voyager.md"} == {2}


def test_replacement_is_atomic_for_readers(runtime):
    """Readers see the old version or the new one of a changing document: never both, never neither."""
    tenant = Tenant("atomic")
    text = lambda v: f"# Marker {v}\n\nThe zanzibarite marker document, revision {v}. " + "Filler sentence. " * 60  # noqa: E731
    runtime.ingest.ingest(tenant, [IngestItem(document_id="m", text=text(0), filename="m.md")])
    runtime.ingest.ingest(tenant, [IngestItem(document_id="other", text="Unrelated text about tides.", filename="o.txt")])
    seen: list[set[int]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            res = runtime.pipeline.retrieve(RetrievalQuery(tenant, "zanzibarite marker", top_k=20, mode="bm25", policy=OPEN))
            seen.append({c.hit.payload["doc_version"] for c in res.candidates if c.hit.document_id == "m"})
            time.sleep(0.002)   # let the writer run: a reader that never yields starves the ingest of the GIL

    t = threading.Thread(target=reader)
    t.start()
    for v in range(1, 8):
        runtime.ingest.ingest(tenant, [IngestItem(document_id="m", text=text(v), filename="m.md")])
        time.sleep(0.02)
    stop.set()
    t.join()
    assert len(seen) > 20
    assert all(len(versions) == 1 for versions in seen), [v for v in seen if len(v) != 1][:5]


def test_delete_removes_chunks_and_bm25_statistics(runtime):
    tenant = Tenant("delete")
    runtime.ingest.ingest(tenant, [
        IngestItem(document_id="a", text="Quokkas live on Rottnest Island. Quokkas are marsupials.", filename="a.txt"),
        IngestItem(document_id="b", text="The quokka is small. Rottnest Island ferries run daily.", filename="b.txt"),
    ])
    q = RetrievalQuery(tenant, "quokka rottnest", top_k=5, mode="bm25", policy=OPEN)
    score_before = {c.hit.document_id: c.fused_score for c in runtime.pipeline.retrieve(q).candidates}
    assert runtime.ingest.delete(tenant, "a") is True
    res = runtime.pipeline.retrieve(q)
    assert {c.hit.document_id for c in res.candidates} == {"b"}
    assert runtime.store.count(_ref(runtime, tenant), document_id="a") == 0
    assert runtime.registry.get(tenant, "a") is None
    assert res.candidates[0].fused_score > score_before["b"]    # df fell, so IDF rose
    assert runtime.ingest.delete(tenant, "a") is False


def test_chunk_metadata_is_complete_and_offsets_point_into_the_document(runtime):
    tenant = Tenant("meta")
    runtime.ingest.ingest(tenant, [IngestItem(document_id="bees", path=SAMPLE_CORPUS / "honeybees.md",
                                              filename="honeybees.md", tags={"team": "bio"}, source_uri="s3://x/b.md")])
    rec = runtime.registry.get(tenant, "bees")
    doc_text = "\n\n".join(e.text for e in next(el for r, el in runtime.registry.iter_ok(tenant) if r.document_id == "bees"))
    hits = list(runtime.store.scroll(_ref(runtime, tenant)))
    assert len(hits) == rec.chunk_count > 1
    required = {"tenant_id", "document_id", "doc_version", "source", "source_uri", "filetype", "pages", "section_path",
                "language", "char_start", "char_end", "content_hash", "ingested_at", "tags", "pii", "chunk_index"}
    for h in hits:
        p = h.payload
        assert required <= set(p), required - set(p)
        assert p["tenant_id"] == "meta" and p["tags"] == {"team": "bio"} and p["language"] == "en"
        assert doc_text[p["char_start"]:p["char_end"]] == h.text
        assert p["section_path"][0] == "Honeybee Colonies"
    assert {h.payload["section"] for h in hits} >= {"Honeybee Colonies > Communication"}


def test_chunks_fit_the_model_and_keep_structure(runtime, docs_fixtures):
    dense = runtime.models.dense
    doc = docs_fixtures("unstructured/layout-parser-paper-fast.pdf")
    for chunker in (SemanticChunker(dense, embed=dense.embed, max_tokens=256, min_tokens=48),
                    FixedSizeChunker(dense, max_tokens=256)):
        chunks = chunker.chunk(doc)
        assert len(chunks) >= 4
        counts = dense.count_tokens([c.index_text for c in chunks])
        assert max(counts) <= 256, f"{chunker.name}: a chunk would be truncated by the model"
    semantic = SemanticChunker(dense, embed=dense.embed, max_tokens=256, min_tokens=48).chunk(doc)
    assert sum(1 for c in semantic if dense.count_tokens([c.text])[0] < 20) <= 2, "small chunks should be merged"
    assert any(c.section_path for c in semantic)


def test_semantic_breakpoints_follow_topic_shifts(runtime):
    dense = runtime.models.dense
    bees = ("Honeybees forage for nectar on flowers. Worker bees communicate with a waggle dance. "
            "The dance tells nestmates the direction of the flowers. Bees store nectar as honey in wax comb. ")
    rockets = ("Rockets burn liquid fuel with oxidiser. The rocket engine nozzle expands hot exhaust gases. "
               "Orbital velocity requires enormous thrust from the first stage. Rocket stages separate after burnout. ")
    doc = ParsedDocument([Element(bees * 3 + rockets * 3, "NarrativeText")], "text/plain", "t.txt")
    chunks = SemanticChunker(dense, embed=dense.embed, max_tokens=128, min_tokens=16,
                             breakpoint_percentile=95).chunk(doc)
    assert len(chunks) >= 2
    assert any("Rockets burn" in c.text and c.text.startswith("Rockets") for c in chunks), \
        "the cut should fall where the topic changes"


def test_bad_tags_fail_only_that_document(runtime):
    tenant = Tenant("tags")
    report = runtime.ingest.ingest(tenant, [
        IngestItem(document_id="good", text="Valid document text about lighthouses.", tags={"team": "ops"}),
        IngestItem(document_id="bad", text="Another valid text about lighthouses.", tags={"Bad Key!": "x"}),
    ])
    outcome = {o.document_id: o for o in report.outcomes}
    assert outcome["good"].status == "ok"
    assert outcome["bad"].status == "failed" and outcome["bad"].reason == "invalid_input"


def test_empty_and_unreadable_inputs_are_reported(runtime, tmp_path):
    tenant = Tenant("broken")
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.docx"
    garbage.write_bytes(b"\x00\x01not a zip at all" * 10)
    report = runtime.ingest.ingest(tenant, [IngestItem(document_id="e", path=empty),
                                            IngestItem(document_id="g", path=garbage),
                                            IngestItem(document_id="t", text="   ")])
    reasons = {o.document_id: o.reason for o in report.outcomes}
    assert reasons["e"] == ReasonCode.EMPTY_FILE.value
    assert reasons["g"] in (ReasonCode.CORRUPT.value, ReasonCode.PARSER_ERROR.value)
    assert reasons["t"] in (ReasonCode.EMPTY_FILE.value, ReasonCode.TOO_LITTLE_TEXT.value, ReasonCode.NO_TEXT.value)
    assert all(o.status == "failed" for o in report.outcomes)


def test_pii_detection_and_redaction_before_storage(runtime):
    text = ("Contact jane.doe@example.com or +44 20 7946 0958. Card 4111 1111 1111 1111 was charged; "
            "refund to GB82 WEST 1234 5698 7654 32. Order 1234 5678 9012 3456 is not a card.")
    found = find_pii(text)
    assert set(found) == {"email", "phone", "card", "iban"}
    assert len(found["card"]) == 1            # the order number fails the Luhn check
    assert luhn_ok("4111111111111111") and not luhn_ok("1234567890123456")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB00 WEST 1234 5698 7654 32")
    tenant = Tenant("pii")
    rt = runtime
    original = rt.ingest.pii
    try:
        rt.ingest.pii = PiiScanner(redact=True)
        rt.ingest.ingest(tenant, [IngestItem(document_id="p", text=text, filename="p.txt")])
    finally:
        rt.ingest.pii = original
    hits = list(rt.store.scroll(_ref(rt, tenant)))
    stored = " ".join(h.text for h in hits)
    assert "jane.doe" not in stored and "4111" not in stored and "WEST" not in stored
    assert "[EMAIL]" in stored and "[CARD]" in stored and "[IBAN]" in stored
    assert set(hits[0].payload["pii"]) == {"email", "phone", "card", "iban"} and hits[0].payload["redacted"]
    _, elements = next(rt.registry.iter_ok(tenant))
    assert "jane.doe" not in " ".join(e.text for e in elements)


def test_section_path_is_embedded_with_the_chunk(runtime):
    tenant = Tenant("sections")
    runtime.ingest.ingest(tenant, [IngestItem(document_id="bees", path=SAMPLE_CORPUS / "honeybees.md")])
    res = runtime.pipeline.retrieve(RetrievalQuery(tenant, "swarming scouts quorum", top_k=1, policy=OPEN))
    top = res.candidates[0].hit.payload
    assert top["section"] == PATH_SEP.join(["Honeybee Colonies", "Swarming"])
    assert np.isfinite(res.candidates[0].dense_cos)
