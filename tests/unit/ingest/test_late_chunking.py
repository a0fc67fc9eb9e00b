"""Late chunking: one encoder pass per section gives the breakpoints and the stored vectors, cached by section."""

from __future__ import annotations

import numpy as np
import pytest

from fathom.ingest.chunking import ChunkerSpec
from fathom.ingest.document import Element, ParsedDocument
from fathom.ingest.indexer import Indexer
from fathom.ingest.ingest_pipeline import IngestItem, IngestPipeline, content_hash
from fathom.ingest.late_chunking import LateChunker
from fathom.ingest.registry import Registry
from fathom.ingest.wiring import build_ingest
from fathom.retrieval.models.embed_cache import EmbeddingCache
from fathom.retrieval.models.embedder import SpanJob, load_embedder
from fathom.retrieval.models.specs import MINILM
from fathom.retrieval.components import load_models, open_store
from fathom.retrieval.tenancy import Tenant

BEES = ("Honeybees forage for nectar on flowers. Worker bees communicate with a waggle dance. "
        "The dance tells nestmates the direction of the flowers. Bees store nectar as honey in wax comb. ")
ROCKETS = ("Rockets burn liquid fuel with oxidiser. The rocket engine nozzle expands hot exhaust gases. "
           "Orbital velocity requires enormous thrust from the first stage. Rocket stages separate after burnout. ")


@pytest.fixture(scope="module")
def dense(base_settings, models_ready):
    return load_embedder(MINILM, base_settings)


def _doc(text: str, title: str | None = "Field notes") -> ParsedDocument:
    elements = [Element(title, "Title", section_path=(title,), is_heading=True)] if title else []
    elements.append(Element(text.strip(), "NarrativeText", section_path=(title,) if title else ()))
    return ParsedDocument(elements, "text/plain", "notes.txt", title=title)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_a_one_chunk_section_gets_exactly_its_plain_encode(dense):
    chunker = LateChunker(Indexer(dense), max_tokens=256)
    (chunk,) = chunker.chunk(_doc(BEES))
    direct = dense.embed([chunk.index_text])[0]
    assert chunk.index_text == "Field notes\n" + BEES.strip()
    assert _cos(chunk.vector, direct) > 0.9999
    assert abs(float(np.linalg.norm(chunk.vector)) - 1.0) < 1e-5


def test_breakpoints_from_pooled_states_follow_the_topic_shift(dense):
    chunker = LateChunker(Indexer(dense), max_tokens=128, min_tokens=16, breakpoint_percentile=95)
    chunks = chunker.chunk(_doc(BEES * 3 + ROCKETS * 3, title=None))
    assert len(chunks) >= 2
    assert any(c.text.startswith("Rockets burn") for c in chunks), "the cut should fall where the topic changes"
    for c in chunks:   # every chunk got a unit vector from the section pass, closer to its own topic
        assert abs(float(np.linalg.norm(c.vector)) - 1.0) < 1e-5
        topic = dense.embed(["bees honey flowers" if "bee" in c.text.lower() else "rocket engines and thrust"])[0]
        other = dense.embed(["rocket engines and thrust" if "bee" in c.text.lower() else "bees honey flowers"])[0]
        assert _cos(c.vector, topic) > _cos(c.vector, other)


def test_token_counts_come_from_offsets_and_chunks_fit_the_budget(dense):
    long_sentence = "word " * 400 + "end."
    doc = _doc(BEES * 4 + long_sentence + " " + ROCKETS * 4)
    chunks = LateChunker(Indexer(dense), max_tokens=128, min_tokens=16).chunk(doc)
    assert len(chunks) >= 5
    for c in chunks:
        assert c.token_count == dense.count_tokens([c.text])[0]       # same count as tokenising the piece alone
        assert dense.count_tokens([c.index_text])[0] <= 128           # never truncated by the model
        assert doc.text[c.char_start:c.char_end] == c.text


def test_pooled_spans_of_one_pass_match_the_whole_sequence_mean(dense):
    enc = dense.tokenize([BEES + ROCKETS])[0]
    ids = np.asarray(enc.ids)
    n = len(ids)
    whole, halves = dense.pool_spans([SpanJob(ids, ((0, n),)), SpanJob(ids, ((0, n // 2), (n // 2, n)))])
    weighted = (halves[0] * (n // 2) + halves[1] * (n - n // 2)) / n   # a chunk's mean from its sentences' means
    np.testing.assert_allclose(weighted, whole[0], atol=1e-5)
    embedded = dense.embed([BEES + ROCKETS])[0]
    assert _cos(whole[0], embedded) > 0.9999


def test_a_late_vector_depends_on_its_section_and_is_cached_by_it(dense, tmp_path):
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    indexer = Indexer(dense, cache=cache)
    chunker = LateChunker(indexer, max_tokens=96, min_tokens=16)
    a, b = _doc(BEES * 3 + ROCKETS * 3), _doc(ROCKETS * 3 + BEES * 3)
    first = chunker.chunk_batch([a, b])
    runs, misses = indexer.embedded, cache.misses
    assert runs > 0 and misses > 0 and cache.hits == 0
    again = chunker.chunk_batch([a, b])
    assert indexer.embedded == runs and cache.misses == misses, "an unchanged section must not be encoded again"
    assert cache.hits == misses
    for x, y in zip(first, again):
        assert [(c.char_start, c.char_end) for c in x] == [(c.char_start, c.char_end) for c in y]
        for cx, cy in zip(x, y):
            np.testing.assert_allclose(cx.vector, cy.vector, atol=1e-6)
    # A chunk of a longer section saw its neighbours: its vector is not its text's plain encode (so a cache keyed
    # by chunk text alone would hand back the wrong vector).
    chunk = first[0][0]
    assert len(first[0]) >= 2
    assert _cos(chunk.vector, dense.embed([chunk.index_text])[0]) < 0.999
    cache.close()


def test_the_late_spec_is_its_own_index_layout():
    late, semantic = ChunkerSpec("late"), ChunkerSpec("semantic")
    assert late.key != semantic.key and "w512" in late.key
    assert ChunkerSpec("late", window=256).key != late.key
    assert ChunkerSpec.from_json(late.to_json()) == late
    doc = _doc(BEES)
    assert content_hash(doc, {}, late.key) != content_hash(doc, {}, semantic.key)


def _pipeline(settings, tmp_path, chunker: str, cache: EmbeddingCache | None = None) -> IngestPipeline:
    s = settings.model_copy(update={"state_dir": tmp_path / "state", "registry_url": None,
                                    "ingest": settings.ingest.model_copy(update={"chunker": chunker,
                                                                                 "embed_mpnet": False})})
    return build_ingest(s, open_store(s), Registry(s.registry), load_models(s), cache=cache)


def test_reingest_and_reindex_of_an_unchanged_corpus_compute_no_embeddings(base_settings, models_ready, tmp_path):
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    pipeline = _pipeline(base_settings, tmp_path, "late", cache)
    tenant = Tenant("late-idem")
    texts = {f"d{i}": (BEES * (i + 1) + ROCKETS * (3 - i % 3)) for i in range(6)}
    items = lambda: [IngestItem(document_id=k, text=v, filename=f"{k}.txt") for k, v in texts.items()]  # noqa: E731
    first = pipeline.ingest(tenant, items())
    assert first.count("ok") == 6 and first.embeddings_computed > 0
    assert first.chunks_written > 6
    again = pipeline.ingest(tenant, items())
    assert again.count("unchanged") == 6 and again.embeddings_computed == 0 and again.chunks_written == 0
    # A reindex re-chunks from the registry: every section pass is a cache hit.
    docs = pipeline.registry.with_elements(tenant, list(texts))
    live = pipeline.store.live_version(tenant)
    from fathom.retrieval.store.contract import IndexRef

    target = IndexRef(tenant, live + 1)
    pipeline.store.create_index(target, pipeline.store.layout(IndexRef(tenant, live)))
    rebuilt = pipeline.rebuild_batch(target, docs)
    assert rebuilt.embeddings_computed == 0 and rebuilt.chunks == first.chunks_written
    pipeline.store.close()
    pipeline.registry.close()
    cache.close()


def test_ingest_report_has_every_stage(base_settings, models_ready, tmp_path):
    pipeline = _pipeline(base_settings, tmp_path, "late")
    report = pipeline.ingest(Tenant("late-stages"), [IngestItem(document_id="a", text=BEES * 4, filename="a.txt")])
    assert set(report.seconds) >= {"parse", "chunk", "embed", "points", "write"}
    assert report.seconds["embed"] > 0 and report.embeddings_computed >= 1
    pipeline.store.close()
    pipeline.registry.close()
