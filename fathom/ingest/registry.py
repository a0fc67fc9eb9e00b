"""The document registry: one row per (tenant, document id).

It records what the index should contain: content hash (idempotency), the
document version written to the index, status and per-document error (nothing
is silently dropped), and the normalised elements, which are the source a
reindex rebuilds from. Every write also records the document in a change
log (one row per document, with a sequence number that only grows), which a
reindex catches up from while it builds the next index version beside the
live one. SQLAlchemy Core over SQLite by default
(``<state>/registry.db``); set ``FATHOM_REGISTRY_URL`` to a PostgreSQL URL when
several processes or hosts share it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fathom.ingest.document import Element
from fathom.retrieval.tenancy import Tenant

metadata = sa.MetaData()

documents = sa.Table(
    "documents", metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("document_id", sa.String(512), primary_key=True),
    sa.Column("doc_version", sa.Integer, nullable=False, default=0),
    sa.Column("status", sa.String(16), nullable=False),          # ok | failed
    sa.Column("reason", sa.String(64)),
    sa.Column("error", sa.Text),
    sa.Column("content_hash", sa.String(64)),
    sa.Column("source_name", sa.String(1024)),
    sa.Column("source_uri", sa.String(2048)),
    sa.Column("filetype", sa.String(255)),
    sa.Column("language", sa.String(16)),
    sa.Column("title", sa.Text),
    sa.Column("chunk_count", sa.Integer, nullable=False, default=0),
    sa.Column("size_bytes", sa.Integer),
    sa.Column("tags", sa.Text),                                   # JSON object
    sa.Column("doc_meta", sa.Text),                               # JSON object: format extras
    sa.Column("elements", sa.LargeBinary),                        # zlib(JSON list of elements)
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
)


# The latest change of each document: written in the same transaction as the row it describes (or its deletion).
# ``seq`` only grows (SQLite AUTOINCREMENT never reuses a value), so "changed since seq N" is one indexed query.
# With PostgreSQL, concurrent transactions may commit out of sequence order; see ``Registry.changed_since``.
document_changes = sa.Table(
    "document_changes", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("document_id", sa.String(512), nullable=False),
    sa.Column("changed_at", sa.String(32), nullable=False),
    sa.UniqueConstraint("tenant", "document_id"),
    sa.Index("ix_document_changes_tenant_seq", "tenant", "seq"),
    sqlite_autoincrement=True,
)

# A retired index version (the one a swap replaced) and the change sequence it is complete up to, so a rollback
# knows which changes to replay into it before it goes live again.
retired_versions = sa.Table(
    "retired_versions", metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("synced_seq", sa.Integer, nullable=False),
    sa.Column("retired_at", sa.String(32), nullable=False),
)


# Chunk counts of documents in index versions that are not live: one being built by a reindex, or the retired one
# a rollback would return to. ``documents.chunk_count`` always describes the live version; at a swap the new live
# version's counts move there and the replaced version's move here (``Registry.swap_chunk_counts``).
version_chunks = sa.Table(
    "version_chunks", metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("index_version", sa.Integer, primary_key=True),
    sa.Column("document_id", sa.String(512), primary_key=True),
    sa.Column("chunk_count", sa.Integer, nullable=False),
)


# Index writes in flight: recorded (one transaction) before a batch's chunks are written to the index, cleared after
# its documents are recorded above. A row left behind means the writing process died in between: its index version
# may hold chunks of a document version the registry never recorded (``IngestPipeline.recover_interrupted_writes``).
pending_writes = sa.Table(
    "pending_writes", metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("document_id", sa.String(512), primary_key=True),
    sa.Column("index_version", sa.Integer, primary_key=True),
    sa.Column("doc_version", sa.Integer, nullable=False),
    sa.Column("started_at", sa.String(32), nullable=False),
)


# Small per-tenant files every process must see alike (an uploaded golden set, the judge's tenant calibration):
# kept here rather than under one process's state dir, which on Kubernetes is a pod's own emptyDir.
tenant_files = sa.Table(
    "tenant_files", metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("stamp", sa.String(64), nullable=False),       # changes with every write (time + content hash)
)


@dataclass(frozen=True, slots=True)
class PendingWrite:
    tenant: str
    document_id: str
    index_version: int
    doc_version: int


@dataclass(slots=True)
class DocumentRecord:
    tenant: str
    document_id: str
    doc_version: int
    status: str
    content_hash: str | None = None
    reason: str | None = None
    error: str | None = None
    source_name: str | None = None
    source_uri: str | None = None
    filetype: str | None = None
    language: str | None = None
    title: str | None = None
    chunk_count: int = 0
    size_bytes: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    doc_meta: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""


def _pack_elements(elements: list[Element]) -> bytes:
    data = [{"t": e.text, "c": e.category, "p": e.page_number, "s": list(e.section_path), "h": e.is_heading}
            for e in elements]
    return zlib.compress(json.dumps(data, ensure_ascii=False).encode(), 6)


def _unpack_elements(blob: bytes) -> list[Element]:
    return [Element(d["t"], d["c"], d["p"], tuple(d["s"]), d["h"]) for d in json.loads(zlib.decompress(blob))]


_SCHEMA_LOCK = int.from_bytes(hashlib.sha256(b"fathom-registry-schema").digest()[:8], "big", signed=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Registry:
    def __init__(self, url: str):
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine: Engine = sa.create_engine(url, **kwargs)
        self._ingested_selects: dict[tuple[str, ...], Any] = {}
        self._lock_dir: Path | None = None
        if url.startswith("sqlite"):
            with self.engine.connect() as c:
                c.exec_driver_sql("PRAGMA journal_mode=WAL")
            database = self.engine.url.database
            if database and database != ":memory:" and not database.startswith("file::memory:"):
                self._lock_dir = Path(database).with_name(Path(database).name + ".locks")
                self._lock_dir.mkdir(parents=True, exist_ok=True)
        with self.engine.begin() as c:
            if self.engine.dialect.name == "postgresql":
                # Processes starting together on a fresh database (API replicas, workers) would race on CREATE TABLE
                # (a unique violation in PostgreSQL's catalog); one at a time, the others then find the tables.
                c.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
            metadata.create_all(c)

    # --- the tenant's write lock, across every process that shares this registry ----------------------
    @contextmanager
    def write_lock(self, tenant: Tenant) -> Iterator[None]:
        """Hold the tenant's write lock across processes (callers serialise their own threads first).

        A document's next version is read from this registry and written to
        the index and back here under it, so two writers of one document can
        never share a version, and the registry always names the version the
        index holds. PostgreSQL: a session advisory lock on a dedicated
        connection; SQLite: ``flock`` on a file beside the database (every
        process sharing an SQLite file is on its host). Both are released by
        the database or the kernel if the holder dies, so a killed writer
        never leaves its tenant locked.
        """
        key = hashlib.sha256(f"fathom-write\x00{tenant.id}".encode()).digest()
        if self.engine.dialect.name == "postgresql":
            lock_id = int.from_bytes(key[:8], "big", signed=True)
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": lock_id})
                try:
                    yield
                finally:
                    c.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": lock_id})
        elif self._lock_dir is not None:
            fd = os.open(self._lock_dir / f"{key[:16].hex()}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)   # releases the flock
        else:                  # an in-memory database lives in one process: its callers' thread lock is enough
            yield

    @staticmethod
    def _record(row: Any) -> DocumentRecord:
        m = row._mapping
        return DocumentRecord(
            tenant=m["tenant"], document_id=m["document_id"], doc_version=m["doc_version"], status=m["status"],
            content_hash=m["content_hash"], reason=m["reason"], error=m["error"], source_name=m["source_name"],
            source_uri=m["source_uri"], filetype=m["filetype"], language=m["language"], title=m["title"],
            chunk_count=m["chunk_count"], size_bytes=m["size_bytes"], tags=json.loads(m["tags"] or "{}"),
            doc_meta=json.loads(m["doc_meta"] or "{}"), created_at=m["created_at"], updated_at=m["updated_at"],
        )

    _LIST_COLUMNS = [c for c in documents.c if c.name != "elements"]

    def get(self, tenant: Tenant, document_id: str) -> DocumentRecord | None:
        q = sa.select(*self._LIST_COLUMNS).where(documents.c.tenant == tenant.id, documents.c.document_id == document_id)
        with self.engine.connect() as c:
            row = c.execute(q).first()
        return self._record(row) if row else None

    def hashes(self, tenant: Tenant, document_ids: list[str]) -> dict[str, tuple[str | None, int, str]]:
        """(content_hash, doc_version, status) per known document id, in one query."""
        out: dict[str, tuple[str | None, int, str]] = {}
        with self.engine.connect() as c:
            for i in range(0, len(document_ids), 500):
                part = document_ids[i:i + 500]
                q = sa.select(documents.c.document_id, documents.c.content_hash, documents.c.doc_version,
                              documents.c.status).where(documents.c.tenant == tenant.id, documents.c.document_id.in_(part))
                out.update((r[0], (r[1], r[2], r[3])) for r in c.execute(q))
        return out

    def list(self, tenant: Tenant, *, status: str | None = None, limit: int = 100, after: str | None = None) -> list[DocumentRecord]:
        q = sa.select(*self._LIST_COLUMNS).where(documents.c.tenant == tenant.id)
        if status:
            q = q.where(documents.c.status == status)
        if after:
            q = q.where(documents.c.document_id > after)
        q = q.order_by(documents.c.document_id).limit(limit)
        with self.engine.connect() as c:
            return [self._record(r) for r in c.execute(q)]

    def counts(self, tenant: Tenant) -> dict[str, int]:
        q = sa.select(documents.c.status, sa.func.count()).where(documents.c.tenant == tenant.id).group_by(documents.c.status)
        with self.engine.connect() as c:
            return {s: n for s, n in c.execute(q)}

    def upsert(self, rec: DocumentRecord, elements: list[Element] | None) -> None:
        self.upsert_many([(rec, elements)])

    def upsert_many(self, records: Sequence[tuple[DocumentRecord, list[Element] | None]]) -> None:
        """Record documents in one transaction (a batch of an ingest is one commit, not one per document)."""
        if not records:
            return
        now = _now()
        with self.engine.begin() as c:
            for rec, elements in records:
                values = {
                    "doc_version": rec.doc_version, "status": rec.status, "reason": rec.reason, "error": rec.error,
                    "content_hash": rec.content_hash, "source_name": rec.source_name, "source_uri": rec.source_uri,
                    "filetype": rec.filetype, "language": rec.language, "title": rec.title,
                    "chunk_count": rec.chunk_count, "size_bytes": rec.size_bytes, "tags": json.dumps(rec.tags),
                    "doc_meta": json.dumps(rec.doc_meta, default=str),
                    "elements": _pack_elements(elements) if elements is not None else None, "updated_at": now,
                }
                key = {"tenant": rec.tenant, "document_id": rec.document_id}
                existing = c.execute(sa.select(documents.c.created_at).where(
                    documents.c.tenant == rec.tenant, documents.c.document_id == rec.document_id)).first()
                if existing:
                    c.execute(documents.update().where(documents.c.tenant == rec.tenant,
                                                       documents.c.document_id == rec.document_id).values(**values))
                else:
                    c.execute(documents.insert().values(**key, **values, created_at=now))
                self._log_change(c, rec.tenant, rec.document_id, now)

    def delete(self, tenant: Tenant, document_id: str) -> bool:
        with self.engine.begin() as c:
            res = c.execute(documents.delete().where(documents.c.tenant == tenant.id, documents.c.document_id == document_id))
            if res.rowcount > 0:
                self._log_change(c, tenant.id, document_id, _now())
        return res.rowcount > 0

    # --- change log (what a reindex catches up from) ------------------------------------
    @staticmethod
    def _log_change(c: Any, tenant: str, document_id: str, now: str) -> None:
        """Move the document's change row to a new, higher sequence number (inside the caller's transaction)."""
        c.execute(document_changes.delete().where(document_changes.c.tenant == tenant,
                                                  document_changes.c.document_id == document_id))
        c.execute(document_changes.insert().values(tenant=tenant, document_id=document_id, changed_at=now))

    def change_seq(self, tenant: Tenant) -> int:
        """The tenant's latest change sequence number (0 before any write): a reindex's starting watermark."""
        q = sa.select(sa.func.max(document_changes.c.seq)).where(document_changes.c.tenant == tenant.id)
        with self.engine.connect() as c:
            return int(c.execute(q).scalar() or 0)

    def changed_since(self, tenant: Tenant, seq: int) -> tuple[list[str], int]:
        """Ids of documents written or deleted after ``seq``, and the new watermark.

        Exact with SQLite, which runs one write transaction at a time, so
        sequence order is commit order. With PostgreSQL a transaction that took
        a lower number may commit after a higher one was read; that document is
        missed by this pass (see the reindex job's notes).
        """
        q = (sa.select(document_changes.c.seq, document_changes.c.document_id)
             .where(document_changes.c.tenant == tenant.id, document_changes.c.seq > seq)
             .order_by(document_changes.c.seq))
        with self.engine.connect() as c:
            rows = c.execute(q).fetchall()
        return [r[1] for r in rows], max((r[0] for r in rows), default=seq)

    def with_elements(self, tenant: Tenant, document_ids: list[str]) -> list[tuple[DocumentRecord, list[Element]]]:
        """The given documents that are ingested (status ok), with their elements."""
        return [(self._record(r), _unpack_elements(r._mapping["elements"]))
                for r in self._ingested(tenant, document_ids, *documents.c)]

    def stored_elements(self, tenant: Tenant, document_ids: list[str]) -> list[tuple[str, int, str | None, list[Element]]]:
        """(document id, version, content hash, elements) of the given ingested documents: only what context
        assembly reads, on the query path, so no other column is fetched or decoded."""
        rows = self._ingested(tenant, document_ids, documents.c.document_id, documents.c.doc_version,
                              documents.c.content_hash, documents.c.elements)
        return [(d, int(v), h, _unpack_elements(e)) for d, v, h, e in rows]

    def _ingested(self, tenant: Tenant, document_ids: list[str], *cols: Any) -> list[Any]:
        """Rows (``cols`` only) of the tenant's given documents that are ingested, 200 ids per query.

        One statement per column list, built once with bound parameters: building and compiling it per call was
        about a third of context assembly's registry read (`scripts/registry_read_bench.py`)."""
        key = tuple(c.name for c in cols)
        q = self._ingested_selects.get(key)
        if q is None:
            q = self._ingested_selects[key] = sa.select(*cols).where(
                documents.c.tenant == sa.bindparam("tenant"), documents.c.status == "ok",
                documents.c.document_id.in_(sa.bindparam("ids", expanding=True)))
        out: list[Any] = []
        with self.engine.connect() as c:
            for i in range(0, len(document_ids), 200):
                out.extend(c.execute(q, {"tenant": tenant.id, "ids": document_ids[i:i + 200]}))
        return out

    # --- per-tenant files (golden set, judge calibration) ------------------------------------------
    def read_file(self, tenant: Tenant, name: str) -> tuple[str, str] | None:
        """(stamp, body) of the tenant's file ``name``, or None."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(tenant_files.c.stamp, tenant_files.c.body).where(
                tenant_files.c.tenant == tenant.id, tenant_files.c.name == name)).first()
        return (row[0], row[1]) if row else None

    def file_stamp(self, tenant: Tenant, name: str) -> str | None:
        """The file's stamp alone (what a reader that holds the body checks before reading it again)."""
        with self.engine.connect() as c:
            return c.execute(sa.select(tenant_files.c.stamp).where(
                tenant_files.c.tenant == tenant.id, tenant_files.c.name == name)).scalar()

    def write_file(self, tenant: Tenant, name: str, body: str) -> str:
        """Create or replace the file in one statement (concurrent writers: the last one wins whole); its stamp."""
        stamp = f"{_now()}:{hashlib.sha256(body.encode()).hexdigest()[:16]}"
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        else:
            raise NotImplementedError(f"registry dialect {dialect}")
        stmt = insert(tenant_files).values(tenant=tenant.id, name=name, body=body, stamp=stamp)
        with self.engine.begin() as c:
            c.execute(stmt.on_conflict_do_update(index_elements=["tenant", "name"],
                                                 set_={"body": body, "stamp": stamp}))
        return stamp

    def delete_file(self, tenant: Tenant, name: str) -> bool:
        with self.engine.begin() as c:
            res = c.execute(tenant_files.delete().where(tenant_files.c.tenant == tenant.id,
                                                        tenant_files.c.name == name))
        return res.rowcount > 0

    # --- retired index versions (rollback targets) -------------------------------------------
    def retire_version(self, tenant: Tenant, version: int, synced_seq: int) -> None:
        """Record that ``version`` stopped being live when the change log was at ``synced_seq``."""
        with self.engine.begin() as c:
            c.execute(retired_versions.delete().where(retired_versions.c.tenant == tenant.id,
                                                      retired_versions.c.version == version))
            c.execute(retired_versions.insert().values(tenant=tenant.id, version=version, synced_seq=synced_seq,
                                                       retired_at=_now()))

    def retired(self, tenant: Tenant) -> dict[int, int]:
        """Retired versions of the tenant and the change sequence each is complete up to."""
        q = sa.select(retired_versions.c.version, retired_versions.c.synced_seq).where(retired_versions.c.tenant == tenant.id)
        with self.engine.connect() as c:
            return {int(v): int(s) for v, s in c.execute(q)}

    def forget_version(self, tenant: Tenant, version: int) -> None:
        """The version went live again or was dropped: it is no longer a rollback target (nor are its counts kept)."""
        with self.engine.begin() as c:
            c.execute(retired_versions.delete().where(retired_versions.c.tenant == tenant.id,
                                                      retired_versions.c.version == version))
            c.execute(version_chunks.delete().where(version_chunks.c.tenant == tenant.id,
                                                    version_chunks.c.index_version == version))

    # --- chunk counts of versions that are not live -----------------------------------------------
    def record_version_chunks(self, tenant: Tenant, index_version: int, counts: dict[str, int]) -> None:
        """Chunks per document written into a version that is not live (a build or a rollback catch-up)."""
        ids = list(counts)
        with self.engine.begin() as c:
            for i in range(0, len(ids), 200):
                part = ids[i:i + 200]
                c.execute(version_chunks.delete().where(
                    version_chunks.c.tenant == tenant.id, version_chunks.c.index_version == index_version,
                    version_chunks.c.document_id.in_(part)))
                c.execute(version_chunks.insert(), [
                    {"tenant": tenant.id, "index_version": index_version, "document_id": d, "chunk_count": counts[d]}
                    for d in part])

    def swap_chunk_counts(self, tenant: Tenant, live: int, previous: int | None) -> None:
        """``live`` was just activated in place of ``previous``: make ``chunk_count`` describe it (one transaction).

        The replaced version's counts are kept aside for a rollback; documents
        with no count recorded for ``live`` (written before counts were kept
        per version) keep theirs. Not a change: nothing goes to the change log.
        """
        t = tenant.id
        with self.engine.begin() as c:
            if previous is not None and previous != live:
                c.execute(version_chunks.delete().where(version_chunks.c.tenant == t,
                                                        version_chunks.c.index_version == previous))
                c.execute(version_chunks.insert().from_select(
                    ["tenant", "index_version", "document_id", "chunk_count"],
                    sa.select(documents.c.tenant, sa.literal(previous, sa.Integer), documents.c.document_id,
                              documents.c.chunk_count).where(documents.c.tenant == t, documents.c.status == "ok")))
            staged = (sa.select(version_chunks.c.chunk_count)
                      .where(version_chunks.c.tenant == t, version_chunks.c.index_version == live,
                             version_chunks.c.document_id == documents.c.document_id).scalar_subquery())
            c.execute(documents.update().where(documents.c.tenant == t, documents.c.status == "ok")
                      .values(chunk_count=sa.func.coalesce(staged, documents.c.chunk_count)))
            c.execute(version_chunks.delete().where(version_chunks.c.tenant == t,
                                                    version_chunks.c.index_version == live))

    # --- index writes in flight (crash recovery) ------------------------------------------------
    def begin_writes(self, tenant: Tenant, index_version: int, documents: list[tuple[str, int]]) -> None:
        """Record that chunks of these (document id, doc version) are about to be written into ``index_version``."""
        if not documents:
            return
        now = _now()
        with self.engine.begin() as c:
            for i in range(0, len(documents), 200):
                part = documents[i:i + 200]
                c.execute(pending_writes.delete().where(
                    pending_writes.c.tenant == tenant.id, pending_writes.c.index_version == index_version,
                    pending_writes.c.document_id.in_([d for d, _ in part])))
                c.execute(pending_writes.insert(), [
                    {"tenant": tenant.id, "document_id": d, "index_version": index_version, "doc_version": v,
                     "started_at": now} for d, v in part])

    def end_writes(self, tenant: Tenant, index_version: int, document_ids: list[str]) -> None:
        """The writes are recorded (or undone): forget them."""
        with self.engine.begin() as c:
            for i in range(0, len(document_ids), 200):
                c.execute(pending_writes.delete().where(
                    pending_writes.c.tenant == tenant.id, pending_writes.c.index_version == index_version,
                    pending_writes.c.document_id.in_(document_ids[i:i + 200])))

    def pending(self) -> list[PendingWrite]:
        """Writes begun and never ended, every tenant (left by a process that died mid-batch)."""
        q = sa.select(pending_writes.c.tenant, pending_writes.c.document_id, pending_writes.c.index_version,
                      pending_writes.c.doc_version).order_by(pending_writes.c.tenant, pending_writes.c.document_id)
        with self.engine.connect() as c:
            return [PendingWrite(r[0], r[1], int(r[2]), int(r[3])) for r in c.execute(q)]

    def iter_ok(self, tenant: Tenant, batch: int = 200) -> Iterator[tuple[DocumentRecord, list[Element]]]:
        """Every ingested document with its elements: the source a reindex rebuilds from."""
        after = ""
        while True:
            q = (sa.select(documents).where(documents.c.tenant == tenant.id, documents.c.status == "ok",
                                            documents.c.document_id > after)
                 .order_by(documents.c.document_id).limit(batch))
            with self.engine.connect() as c:
                rows = c.execute(q).fetchall()
            if not rows:
                return
            for r in rows:
                yield self._record(r), _unpack_elements(r._mapping["elements"])
            after = rows[-1]._mapping["document_id"]

    def close(self) -> None:
        self.engine.dispose()
