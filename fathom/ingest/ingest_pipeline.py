"""The ingestion pipeline: parse → validate → hash → chunk → tag → embed → write → record.

Guarantees:

* **Per-document outcomes.** Every input ends as ``ok``, ``unchanged`` or
  ``failed`` with a reason code; one bad file never fails the batch, and no
  document is dropped silently.
* **Idempotent.** A document whose content hash is unchanged computes no
  embeddings and writes nothing.
* **Atomic replacement for readers.** A changed document's new chunks are
  written (as ``doc_version + 1``) before the old ones are deleted, and
  readers drop superseded chunks when both are visible, so a query sees the
  old version or the new one, never both and never neither.
* **Registry last.** The registry row is updated only after the index
  writes succeed, so a crash leaves the document to be redone, not lost.
* **Concurrent writers serialise.** A document's next version is read from
  the registry, written to the index and recorded under the tenant's write
  lock (threads, then processes sharing the registry: ``Registry.write_lock``),
  so every acknowledged write gets its own version (or ``unchanged``), exactly
  one writer's chunks are live, and the registry's chunk count is the index's.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fathom.ingest.chunkers import Chunker, build_chunker
from fathom.ingest.chunking import ChunkerSpec
from fathom.ingest.document import Element, IngestError, ParsedDocument, ReasonCode
from fathom.ingest.indexer import DocumentChunks, Indexer
from fathom.ingest.overlap import overlapped
from fathom.ingest.pii import PiiScanner, redacted_kinds
from fathom.ingest.registry import DocumentRecord, PendingWrite, Registry
from fathom.retrieval.bm25 import Bm25Params
from fathom.retrieval.identifiers import validate_tags
from fathom.retrieval.store.contract import IndexLayout, IndexRef, VectorStore
from fathom.retrieval.tenancy import Tenant

@dataclass(slots=True)
class IngestItem:
    """One document to ingest. Exactly one of path / data / text / parsed is set."""

    document_id: str
    path: Path | None = None
    data: bytes | None = None
    text: str | None = None
    parsed: ParsedDocument | None = None
    filename: str | None = None
    content_type: str | None = None
    title: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    source_uri: str | None = None

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.path, self.data, self.text, self.parsed)]
        if sum(given) != 1:
            raise ValueError("an IngestItem needs exactly one of path, data, text or parsed")
        if not self.document_id or len(self.document_id) > 512:
            raise ValueError("document_id must be 1-512 characters")


@dataclass(slots=True)
class DocumentOutcome:
    document_id: str
    status: str                 # ok | unchanged | failed
    reason: str | None = None
    error: str | None = None
    chunks: int = 0
    doc_version: int = 0


@dataclass(slots=True)
class IngestReport:
    outcomes: list[DocumentOutcome] = field(default_factory=list)
    chunks_written: int = 0
    embeddings_computed: int = 0
    index_version: int | None = None
    # Wall time per stage; "embed_rerank" is the part of "embed" spent on index-time mpnet vectors.
    # "embed" is all encoder time (breakpoint sentences, section passes, chunk vectors), "chunk" the rest of
    # chunking, "points" BM25 vectors and payloads, "write" the store and the registry. With overlapped writes the
    # stages run side by side, so they add up to more than the wall time.
    seconds: dict[str, float] = field(default_factory=lambda: {"parse": 0.0, "chunk": 0.0, "embed": 0.0,
                                                               "embed_rerank": 0.0, "points": 0.0, "write": 0.0})

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failures(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes:
            if o.status == "failed":
                out[o.reason or "unknown"] = out.get(o.reason or "unknown", 0) + 1
        return out

    def summary(self) -> dict[str, Any]:
        return {"ok": self.count("ok"), "unchanged": self.count("unchanged"), "failed": self.count("failed"),
                "failures": self.failures, "chunks_written": self.chunks_written,
                "embeddings_computed": self.embeddings_computed, "index_version": self.index_version,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}


def content_hash(parsed: ParsedDocument, tags: dict[str, str], config_key: str) -> str:
    """Hash of everything that shapes the chunks: text, structure, tags and the chunking config."""
    h = hashlib.sha256()
    for e in parsed.elements:
        h.update(json.dumps([e.text, e.category, e.page_number, e.section_path, e.is_heading]).encode())
    h.update(json.dumps([sorted(tags.items()), parsed.source_name, parsed.filetype, config_key]).encode())
    return h.hexdigest()


ProgressHook = Callable[[int, int], None]   # (documents done, documents total or -1)


@dataclass(slots=True)
class RebuildReport:
    """What :meth:`IngestPipeline.rebuild_batch` wrote into the version being built."""

    documents: int = 0
    chunks: int = 0
    embeddings_computed: int = 0
    without_chunks: list[str] = field(default_factory=list)   # ids the version's chunker produced nothing for


@dataclass(slots=True)
class PreparedRebuild:
    """A rebuild batch chunked and encoded, waiting for its write."""

    target: IndexRef
    layout: IndexLayout
    chunked: list[tuple[DocumentChunks | None, DocumentRecord]]
    docs: list[DocumentChunks]
    embeddings_computed: int


class IngestPipeline:
    def __init__(self, store: VectorStore, registry: Registry, indexer: Indexer, chunker: Chunker, *,
                 bm25: Bm25Params = Bm25Params(), pii: PiiScanner | None = None, with_rerank_vectors: bool = True,
                 batch_docs: int = 64, overlap_writes: bool = True):
        self.store = store
        self.registry = registry
        self.indexer = indexer
        self.chunker = chunker
        self.bm25 = bm25
        self.pii = pii or PiiScanner(redact=False)
        self.with_rerank_vectors = with_rerank_vectors and indexer.rerank is not None
        self.batch_docs = batch_docs
        self.overlap_writes = overlap_writes
        self._tenant_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._chunkers: dict[str, Chunker] = {}

    @property
    def config_key(self) -> str:
        return self.config_key_for(self.chunker)

    def config_key_for(self, chunker: Chunker) -> str:
        """Everything besides the content that shapes a document's chunks (part of its content hash)."""
        return f"{chunker.spec.key}:redact={self.pii.redact}"

    def chunker_for(self, layout: IndexLayout | None) -> Chunker:
        """The chunker of an index version: the one its layout records (a reindex may have built it with another
        than this pipeline's default), so that every document of a version is cut alike."""
        raw = layout.build.get("chunker_spec") if layout is not None else None
        if not raw:
            return self.chunker
        return self.chunker_from_spec(ChunkerSpec.from_json(raw))

    def chunker_from_spec(self, spec: ChunkerSpec) -> Chunker:
        if spec.key == self.chunker.spec.key:
            return self.chunker
        with self._locks_guard:
            if spec.key not in self._chunkers:
                self._chunkers[spec.key] = build_chunker(spec, self.indexer.dense, self.indexer.embed_dense,
                                                         self.indexer)
            return self._chunkers[spec.key]

    @contextmanager
    def tenant_lock(self, tenant: Tenant) -> Iterator[None]:
        """The tenant's write lock: its writes (version decisions, replace sequences, swaps) run one at a time.

        This process's threads queue on a lock first, then the process takes
        the registry's write lock, which every process sharing the registry
        honours (API replicas and workers on the server store).
        """
        with self._locks_guard:
            lock = self._tenant_locks.setdefault(tenant.id, threading.Lock())
        with lock, self.registry.write_lock(tenant):
            yield

    # --- parsing ------------------------------------------------------------------
    @staticmethod
    def parse(item: IngestItem) -> ParsedDocument:
        if item.parsed is not None:
            return item.parsed
        from fathom.ingest import parse  # unstructured is heavy; import on first real document

        if item.path is not None:
            doc = parse.parse_file(item.path, source_name=item.filename, content_type=item.content_type)
        elif item.data is not None:
            doc = parse.parse_bytes(item.data, item.filename or item.document_id, content_type=item.content_type)
        else:
            text = item.text or ""
            doc = parse.parse_bytes(text.encode("utf-8"), item.filename or f"{item.document_id}.txt",
                                    content_type=item.content_type or "text/plain")
        if item.title and not doc.title:
            doc.title = item.title
        return doc

    # --- main loop ------------------------------------------------------------------
    def ingest(self, tenant: Tenant, items: Iterable[IngestItem], *, total: int = -1,
               progress: ProgressHook | None = None, target_version: int | None = None,
               report: IngestReport | None = None) -> IngestReport:
        """Ingest ``items`` into the tenant's live index (or ``target_version`` during a reindex).

        Batch n is written (BM25 vectors, payloads, store, registry) in a worker
        thread while batch n + 1 is parsed, chunked and encoded here, so the
        encoder does not wait for writes (``fathom.ingest.overlap``). ``progress``
        is called here once a batch is written; pass ``report`` to read the
        running counts (chunks written) from it.
        """
        report = report if report is not None else IngestReport()
        done = [0]

        def written(batch: list[IngestItem], _: None) -> None:
            done[0] += len(batch)
            if progress:
                progress(done[0], total)

        overlapped(_batches(items, self.batch_docs),
                   lambda batch: self._prepare_batch(tenant, batch, report, target_version),
                   lambda prepared: self._write(tenant, prepared, report, target_version) if prepared else None,
                   written, enabled=self.overlap_writes)
        return report

    def _prepare_batch(self, tenant: Tenant, batch: list[IngestItem], report: IngestReport,
                       target_version: int | None) -> list[tuple[IngestItem, ParsedDocument, str, DocumentChunks]]:
        """Parse, skip unchanged, chunk and encode one batch (everything that needs no write lock)."""
        known = self.registry.hashes(tenant, [i.document_id for i in batch])
        layout = self._write_layout(tenant, target_version)
        chunker = self.chunker_for(layout)
        config_key = self.config_key_for(chunker)
        todo: list[tuple[IngestItem, ParsedDocument, str, set[str], dict[str, str]]] = []
        t0 = time.perf_counter()
        for item in batch:
            try:
                tags = validate_tags(item.tags)
                parsed = self.parse(item)
                if not parsed.elements:
                    raise IngestError(ReasonCode.NO_TEXT, "no text elements after parsing")
            except IngestError as exc:
                self._fail(tenant, item, exc.code.value, exc.message, report)
                continue
            except ValueError as exc:
                self._fail(tenant, item, "invalid_input", str(exc), report)
                continue
            digest = content_hash(parsed, tags, config_key)
            prev = known.get(item.document_id)
            if prev and prev[0] == digest and prev[2] == "ok" and target_version is None:
                report.outcomes.append(DocumentOutcome(item.document_id, "unchanged", doc_version=prev[1]))
                continue
            parsed, pii_found = self.pii.apply(parsed)
            todo.append((item, parsed, digest, pii_found, tags))
        report.seconds["parse"] += time.perf_counter() - t0
        if not todo:
            return []
        t0 = time.perf_counter()
        before, model_s = self.indexer.embedded, self.indexer.model_seconds
        all_chunks = chunker.chunk_batch([t[1] for t in todo])
        prepared: list[tuple[IngestItem, ParsedDocument, str, DocumentChunks]] = []
        for (item, parsed, digest, pii_found, tags), chunks in zip(todo, all_chunks):
            if not chunks:
                self._fail(tenant, item, ReasonCode.NO_TEXT.value, "document produced no chunks", report)
                continue
            payload = self._doc_payload(parsed, item.source_uri, parsed.title or item.title, digest, tags, pii_found)
            # doc_version 0 until _write decides it under the tenant's write lock.
            prepared.append((item, parsed, digest, DocumentChunks(item.document_id, 0, chunks, payload)))
        report.seconds["chunk"] += time.perf_counter() - t0 - (self.indexer.model_seconds - model_s)
        # Vectors before the write lock (and beside the previous batch's write); a concurrent writer may still make
        # a document unchanged, which then only cost its encode.
        rerank_s = self.indexer.seconds["rerank"]
        with_rerank = bool(layout.rerank_dim) if layout is not None else self.with_rerank_vectors
        self.indexer.encode([p[3] for p in prepared], with_rerank=with_rerank)
        report.embeddings_computed += self.indexer.embedded - before
        report.seconds["embed"] += self.indexer.model_seconds - model_s
        report.seconds["embed_rerank"] += self.indexer.seconds["rerank"] - rerank_s
        return prepared

    def _write(self, tenant: Tenant, prepared: list[tuple[IngestItem, ParsedDocument, str, DocumentChunks]],
               report: IngestReport, target_version: int | None) -> None:
        with self.tenant_lock(tenant):
            prepared = self._versioned(tenant, prepared, report, target_version)
            if not prepared:
                return
            docs = [p[3] for p in prepared]
            ref = self._target(tenant, docs, target_version)
            layout = self.store.layout(ref)
            t0 = time.perf_counter()
            before = self.indexer.embedded
            points = self.indexer.points(tenant.id, docs, layout)   # encodes only what encode() could not know
            report.embeddings_computed += self.indexer.embedded - before
            report.seconds["points"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            # Intent first: if this process dies between the index write and the registry rows below, the next
            # owner of the store removes the chunks nobody recorded (recover_interrupted_writes).
            self.registry.begin_writes(tenant, ref.version, [(dc.document_id, dc.doc_version) for dc in docs])
            self.store.upsert(ref, points)
            records = [(DocumentRecord(
                tenant=tenant.id, document_id=dc.document_id, doc_version=dc.doc_version, status="ok",
                content_hash=digest, source_name=parsed.source_name, source_uri=item.source_uri,
                filetype=parsed.filetype, language=parsed.language, title=parsed.title or item.title,
                chunk_count=len(dc.chunks), size_bytes=len(parsed.text), tags=dc.doc_payload["tags"],
                doc_meta=parsed.metadata), parsed.elements) for item, parsed, digest, dc in prepared]
            # Record, then drop the old versions: a crash between the two leaves both versions' chunks and the
            # new record, and recovery keeps the recorded one; the other order could lose both.
            self.registry.upsert_many(records)
            for dc in docs:
                if dc.doc_version > 1:   # version 1 is a first write: there is no older version to drop
                    self.store.delete_document(ref, dc.document_id, keep_version=dc.doc_version)
                report.outcomes.append(DocumentOutcome(dc.document_id, "ok", chunks=len(dc.chunks), doc_version=dc.doc_version))
            self.registry.end_writes(tenant, ref.version, [dc.document_id for dc in docs])
            report.seconds["write"] += time.perf_counter() - t0
            report.chunks_written += len(points)
            report.index_version = ref.version

    def _versioned(self, tenant: Tenant, prepared: list[tuple[IngestItem, ParsedDocument, str, DocumentChunks]],
                   report: IngestReport, target_version: int | None
                   ) -> list[tuple[IngestItem, ParsedDocument, str, DocumentChunks]]:
        """Each document's next version, read from the registry under the tenant's write lock (held by the caller).

        The registry read before chunking is only a shortcut for unchanged
        documents; a concurrent writer may have recorded a version since. Read
        here, the version is the recorded one + 1 and is recorded before the
        lock is released, so two writers never share a version (point ids are
        derived from it) and a write whose content is now the live one is
        ``unchanged``.
        """
        current = self.registry.hashes(tenant, [p[3].document_id for p in prepared])
        out = []
        for item, parsed, digest, dc in prepared:
            prev = current.get(dc.document_id)
            if prev and prev[0] == digest and prev[2] == "ok" and target_version is None:
                report.outcomes.append(DocumentOutcome(dc.document_id, "unchanged", doc_version=prev[1]))
                continue
            dc.doc_version = (prev[1] if prev else 0) + 1
            out.append((item, parsed, digest, dc))
        return out

    def _target(self, tenant: Tenant, docs: list[DocumentChunks], target_version: int | None) -> IndexRef:
        """The index to write to; the tenant's first write creates v1 with BM25 stats from this batch."""
        if target_version is not None:
            return IndexRef(tenant, target_version)
        return self.ensure_index(tenant, self.indexer.average_length(docs))[0]

    def ensure_index(self, tenant: Tenant, avgdl: float | None = None) -> tuple[IndexRef, bool]:
        """The tenant's live version, creating and activating the first one if there is none; ``(ref, created)``.

        The single place a tenant's first index is made: a first ingest calls it
        (BM25 ``avgdl`` from its batch), and so does ``fathom store init`` (the
        Helm bootstrap job) with the default ``avgdl`` - a reindex recomputes it.
        Safe to race: a concurrent creator's version is taken as it is.
        """
        live = self.store.live_version(tenant)
        if live is not None:
            return IndexRef(tenant, live), False
        ref = IndexRef(tenant, max(self.store.versions(tenant), default=0) + 1)
        try:
            self.store.create_index(ref, self.new_layout(avgdl or 100.0))
        except FileExistsError:
            live = self.store.live_version(tenant)
            if live is not None:
                return IndexRef(tenant, live), False
        self.store.activate(ref)
        return ref, True

    def _doc_payload(self, parsed: ParsedDocument, source_uri: str | None, title: str | None, digest: str | None,
                     tags: dict[str, str], pii_found: set[str]) -> dict[str, Any]:
        """The document-level payload every chunk of the document carries."""
        return {"source": parsed.source_name, "source_uri": source_uri, "filetype": parsed.filetype,
                "language": parsed.language, "title": title, "content_hash": digest, "tags": tags,
                "pii": sorted(pii_found), "redacted": self.pii.redact and bool(pii_found)}

    def _write_layout(self, tenant: Tenant, target_version: int | None) -> IndexLayout | None:
        """The layout of the version a write will go to (None before the tenant's first write creates one)."""
        version = target_version if target_version is not None else self.store.live_version(tenant)
        return None if version is None else self.store.layout(IndexRef(tenant, version))

    def new_layout(self, avgdl: float, *, chunker: Chunker | None = None, bm25: Bm25Params | None = None,
                   with_rerank_vectors: bool | None = None) -> IndexLayout:
        """The layout of a new version: this pipeline's configuration, or (for a reindex) another one."""
        chunker = chunker or self.chunker
        rerank = self.with_rerank_vectors if with_rerank_vectors is None else with_rerank_vectors
        if rerank and self.indexer.rerank is None:
            raise ValueError("rerank vectors requested but no rerank embedder is loaded")
        layout = self.indexer.layout(avgdl, bm25 or self.bm25, {"chunker": self.config_key_for(chunker),
                                                                "chunker_spec": chunker.spec.to_json()})
        if not rerank:
            layout = replace(layout, rerank_dim=None, rerank_model=None)
        return layout

    # --- rebuilding a version (reindex) -------------------------------------------------
    def chunk_records(self, documents: list[tuple[DocumentRecord, list[Element]]],
                      chunker: Chunker) -> list[tuple[DocumentChunks | None, DocumentRecord]]:
        """Chunk registry documents as they are recorded (same doc_version, content hash and tags).

        The stored elements are already redacted if redaction was on when the
        document was ingested; their placeholders count as the PII kinds they
        replaced. ``None`` marks a document that produced no chunk.
        """
        parsed_docs = []
        for rec, elements in documents:
            doc = ParsedDocument(elements, rec.filetype or "text/plain", rec.source_name or rec.document_id,
                                 language=rec.language, title=rec.title, metadata=dict(rec.doc_meta))
            parsed, kinds = self.pii.apply(doc)
            parsed_docs.append((rec, parsed, kinds | redacted_kinds(doc.text)))
        out: list[tuple[DocumentChunks | None, DocumentRecord]] = []
        for (rec, parsed, kinds), chunks in zip(parsed_docs, chunker.chunk_batch([p for _, p, _ in parsed_docs])):
            payload = self._doc_payload(parsed, rec.source_uri, parsed.title, rec.content_hash, rec.tags, kinds)
            out.append((DocumentChunks(rec.document_id, rec.doc_version, chunks, payload) if chunks else None, rec))
        return out

    def rebuild_batch(self, target: IndexRef, documents: list[tuple[DocumentRecord, list[Element]]]) -> RebuildReport:
        """Write registry documents into ``target`` (a version being built beside the live one), as its layout says.

        The documents' registry rows are not written: they keep describing
        what the live index must contain, and the change log is what the
        reindex catches up from, so rebuild writes must not show up there as
        changes. Only the chunk count of each document in ``target`` is
        recorded (``Registry.record_version_chunks``), for the swap to make
        ``chunk_count`` describe ``target`` once it is live. ``target`` is never
        the live version, so each document's chunks there (of any version,
        possibly more of them than it has now) are removed before its new ones
        are written.
        """
        return self.write_rebuild(self.prepare_rebuild(target, documents))

    def prepare_rebuild(self, target: IndexRef, documents: list[tuple[DocumentRecord, list[Element]]]) -> PreparedRebuild:
        """The encoder half of :meth:`rebuild_batch`: chunk and encode (a reindex overlaps it with the last write)."""
        layout = self.store.layout(target)
        before = self.indexer.embedded
        chunked = self.chunk_records(documents, self.chunker_for(layout))
        docs = [dc for dc, _ in chunked if dc is not None]
        self.indexer.encode(docs, with_rerank=bool(layout.rerank_dim))
        return PreparedRebuild(target, layout, chunked, docs, self.indexer.embedded - before)

    def write_rebuild(self, prepared: PreparedRebuild, *, replace: bool = True) -> RebuildReport:
        """The write half of :meth:`rebuild_batch`. ``replace=False`` skips removing each document's chunks first:
        for the first pass of a build, where every document is written once into a version that was empty."""
        target, chunked = prepared.target, prepared.chunked
        before = self.indexer.embedded
        points = self.indexer.points(target.tenant.id, prepared.docs, prepared.layout)
        if replace:
            for _, rec in chunked:
                self.store.delete_document(target, rec.document_id)
        self.store.upsert(target, points)
        self.registry.record_version_chunks(target.tenant, target.version,
                                            {rec.document_id: len(dc.chunks) if dc else 0 for dc, rec in chunked})
        return RebuildReport(documents=len(prepared.docs), chunks=len(points),
                             embeddings_computed=prepared.embeddings_computed + self.indexer.embedded - before,
                             without_chunks=[rec.document_id for dc, rec in chunked if dc is None])

    def _fail(self, tenant: Tenant, item: IngestItem, reason: str, message: str, report: IngestReport) -> None:
        with self.tenant_lock(tenant):   # read and write as one step: a concurrent ok write must not be overwritten
            prev = self.registry.get(tenant, item.document_id)
            if prev and prev.status == "ok":
                # A failed update must not hide the version that is still searchable.
                report.outcomes.append(DocumentOutcome(item.document_id, "failed", reason, message,
                                                       doc_version=prev.doc_version))
                return
            self.registry.upsert(DocumentRecord(
                tenant=tenant.id, document_id=item.document_id, doc_version=0, status="failed", reason=reason,
                error=message[:2000], source_name=item.filename or (item.path.name if item.path else None),
                source_uri=item.source_uri, tags={}), None)
        report.outcomes.append(DocumentOutcome(item.document_id, "failed", reason, message))

    # --- crash recovery ------------------------------------------------------------------
    def recover_interrupted_writes(self) -> list[PendingWrite]:
        """Undo index writes of batches whose process died before recording them in the registry.

        A batch writes its chunks first, then per document records it and drops
        its previous version, so a SIGKILL in between leaves chunks of document
        versions nobody was told about (visible to queries), or an old version
        next to the recorded new one. For each write still pending, the chunks
        of any version but the recorded one are removed from that index version
        (all of them if the document was never recorded); a resent batch then
        writes them again. Call it only in the process that owns the store,
        before it writes (with several writer processes, another one's pending
        write may be alive).
        """
        undone = []
        for p in self.registry.pending():
            tenant = Tenant(p.tenant)
            with self.tenant_lock(tenant):
                if p.index_version in self.store.versions(tenant):
                    ref = IndexRef(tenant, p.index_version)
                    rec = self.registry.get(tenant, p.document_id)
                    if rec is None or rec.status != "ok":
                        self.store.delete_document(ref, p.document_id)
                        undone.append(p)
                    else:   # keep only the recorded version: drops an unrecorded new one, or a not yet dropped old one
                        self.store.delete_document(ref, p.document_id, keep_version=rec.doc_version)
                        if rec.doc_version != p.doc_version:
                            undone.append(p)
                self.registry.end_writes(tenant, p.index_version, [p.document_id])
        return undone

    # --- deletion ---------------------------------------------------------------------
    def delete(self, tenant: Tenant, document_id: str) -> bool:
        """Remove every chunk of the document (and with them its BM25 statistics) and its record."""
        with self.tenant_lock(tenant):
            live = self.store.live_version(tenant)
            if live is not None:
                self.store.delete_document(IndexRef(tenant, live), document_id)
            return self.registry.delete(tenant, document_id)


def _batches(items: Iterable[IngestItem], n: int) -> Iterator[list[IngestItem]]:
    batch: list[IngestItem] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch

