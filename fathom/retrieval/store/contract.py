"""The vector store contract shared by the embedded (Qdrant Edge) and server (qdrant-client) adapters.

Physical layout, identical in both adapters:

* one index per **(tenant, version)**: an Edge shard folder, or a server
  collection. The live version of a tenant is named by a manifest file (Edge)
  or an alias (server); a reindex builds the next version beside the live one
  and swaps the pointer atomically (blue/green);
* named vectors: ``dense`` (cosine, the first-stage embedder), ``bm25``
  (sparse, IDF modifier) and, when the version was built with them, ``mpnet``
  (cosine, used only for second-stage rescoring);
* payload: ``tenant_id`` (keyword index, ``is_tenant``), ``document_id``
  (keyword index), ``doc_version``, ``chunk_index``, ``text`` and metadata.

Every read carries the tenant twice: it selects the tenant's index, and it is
sent as a ``tenant_id`` filter (and as the sparse leg's IDF corpus), so a
routing mistake cannot leak another tenant's chunks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from fathom.retrieval.bm25 import SparseVector
from fathom.retrieval.identifiers import filter_problem
from fathom.retrieval.tenancy import Tenant

DENSE = "dense"
SPARSE = "bm25"
RERANK = "mpnet"

Mode = Literal["hybrid", "dense", "bm25"]
FusionKind = Literal["rrf", "dbsf"]



class StoreUnavailable(RuntimeError):
    """The store cannot be reached or failed; the service answers 503 ``unavailable``."""


class IndexNotFound(LookupError):
    """The tenant has no live index version (nothing ingested yet)."""


@dataclass(frozen=True, slots=True)
class IndexLayout:
    """How an index version was built: vector sizes, models and BM25 normalisation.

    Fixed when the version is created. ``bm25_avgdl`` in particular is frozen
    per version so every document in it is normalised the same way; a reindex
    recomputes it over the whole corpus.
    """

    dense_dim: int
    rerank_dim: int | None = None          # mpnet vectors, when computed at index time
    dense_model: str = ""
    rerank_model: str | None = None
    bm25_k1: float = 0.9
    bm25_b: float = 0.4
    bm25_avgdl: float = 100.0
    build: Mapping[str, Any] = field(default_factory=dict)   # chunker and other settings, for provenance

    def to_json(self) -> dict[str, Any]:
        return {"dense_dim": self.dense_dim, "rerank_dim": self.rerank_dim, "dense_model": self.dense_model,
                "rerank_model": self.rerank_model, "bm25_k1": self.bm25_k1, "bm25_b": self.bm25_b,
                "bm25_avgdl": self.bm25_avgdl, "build": dict(self.build)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "IndexLayout":
        known = {k: data[k] for k in ("dense_dim", "rerank_dim", "dense_model", "rerank_model", "bm25_k1", "bm25_b",
                                      "bm25_avgdl", "build") if k in data}
        return cls(**known)


@dataclass(frozen=True, slots=True)
class IndexRef:
    """One physical index: a tenant's given version."""

    tenant: Tenant
    version: int

    def __post_init__(self) -> None:
        if not isinstance(self.tenant, Tenant):
            raise TypeError("IndexRef needs a Tenant")
        if self.version < 1:
            raise ValueError("index versions start at 1")


@dataclass(slots=True)
class ChunkPoint:
    """A chunk ready to be written: id, vectors and payload."""

    id: str                                   # UUID string, deterministic per content
    dense: np.ndarray
    sparse: SparseVector
    payload: dict[str, Any]
    rerank: np.ndarray | None = None


@dataclass(slots=True)
class Hit:
    """A stored chunk returned by a search or scroll."""

    id: str
    score: float
    payload: dict[str, Any]
    vectors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def document_id(self) -> str:
        return str(self.payload.get("document_id"))

    @property
    def text(self) -> str:
        return str(self.payload.get("text", ""))


# Payload fields an answer returns as a chunk's metadata (the rest is internal bookkeeping or shown as provenance).
RETURNED_METADATA_KEYS = ("source", "source_uri", "title", "filetype", "language", "section", "section_path", "pages",
                          "tags", "pii", "redacted", "ingested_at", "content_hash")


def returned_metadata(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A chunk's metadata as answers return it: what the injection scan reads and what the client gets."""
    return {k: payload[k] for k in RETURNED_METADATA_KEYS if payload.get(k) not in (None, "", [], {})}


@dataclass(frozen=True, slots=True)
class MetadataFilter:
    """Exact-match conditions on payload keys; a list value means "any of".

    ``exclude_documents`` removes those documents from the search (a ``must_not``
    on ``document_id``): the relevance judge's self-supervised calibration asks a
    golden query with its known evidence filtered out, which turns it into an
    on-topic question the corpus cannot answer, without touching the index.
    """

    conditions: Mapping[str, str | int | bool | Sequence[str] | Sequence[int]]
    exclude_documents: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """The grammar of fathom.retrieval.identifiers: keys as tag keys are at ingest, values the store accepts."""
        for key, value in self.conditions.items():
            problem = filter_problem(key, value)
            if problem:
                raise ValueError(problem)


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """A first-stage search. The tenant is required and type-checked: there is no tenant-less search."""

    tenant: Tenant
    mode: Mode
    limit: int
    dense: np.ndarray | None = None
    sparse: SparseVector | None = None
    prefetch_limit: int = 200
    fusion: FusionKind = "rrf"
    rrf_k: int = 2
    hnsw_ef: int | None = None
    exact: bool = False
    filter: MetadataFilter | None = None
    version: int | None = None    # None: the live version

    def __post_init__(self) -> None:
        if not isinstance(self.tenant, Tenant):
            raise TypeError("SearchRequest needs a Tenant; searches are always tenant-scoped")
        if self.mode in ("hybrid", "dense") and self.dense is None:
            raise ValueError(f"mode {self.mode!r} needs a dense query vector")
        if self.mode in ("hybrid", "bm25") and self.sparse is None:
            raise ValueError(f"mode {self.mode!r} needs a sparse query vector")
        if self.limit < 1:
            raise ValueError("limit must be >= 1")


class VectorStore(Protocol):
    """What retrieval, ingestion and the reindex jobs need from a store."""

    # --- index versions -------------------------------------------------
    def create_index(self, ref: IndexRef, layout: IndexLayout) -> None: ...
    def layout(self, ref: IndexRef) -> IndexLayout: ...
    def live_version(self, tenant: Tenant) -> int | None: ...
    def activate(self, ref: IndexRef) -> int | None:
        """Atomically make ``ref`` the live version; returns the version it replaced."""
        ...
    def versions(self, tenant: Tenant) -> list[int]: ...
    def drop_index(self, ref: IndexRef) -> None: ...
    def tenants(self) -> list[Tenant]: ...

    # --- writes ---------------------------------------------------------
    def upsert(self, ref: IndexRef, points: Sequence[ChunkPoint]) -> None: ...
    def delete_document(self, ref: IndexRef, document_id: str, *, keep_version: int | None = None) -> None:
        """Delete a document's chunks (all of them, or all but ``keep_version``)."""
        ...
    def optimize(self, ref: IndexRef) -> None:
        """Build HNSW/payload indexes after bulk loads (no-op where the engine does it itself)."""
        ...

    # --- reads ----------------------------------------------------------
    def search(self, request: SearchRequest) -> list[Hit]: ...
    def scroll(self, ref: IndexRef, *, document_id: str | None = None, with_vectors: tuple[str, ...] = (),
               batch: int = 256) -> Iterator[Hit]: ...
    def fetch_vectors(self, ref: IndexRef, ids: Sequence[str], names: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
        """Stored vectors of some points by id (the reranker's head only, not every candidate)."""
        ...
    def count(self, ref: IndexRef, *, document_id: str | None = None) -> int: ...
    def size_bytes(self, ref: IndexRef) -> int | None: ...
    def describe(self, ref: IndexRef) -> dict[str, Any]:
        """The physical layout of a version (vectors, sparse modifier, sharding, indexes) for operators and checks."""
        ...
    def ping(self) -> None:
        """Raise StoreUnavailable if the store cannot serve."""
        ...
    def close(self) -> None: ...


def tenant_payload_guard(tenant: Tenant, hits: list[Hit]) -> list[Hit]:
    """Last line of defence: drop anything whose payload names another tenant.

    The store already filters on ``tenant_id``; this costs nothing and turns a
    future filter bug into missing results instead of a data leak.
    """
    return [h for h in hits if h.payload.get("tenant_id") == tenant.id]
