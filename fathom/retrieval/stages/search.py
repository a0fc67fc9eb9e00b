"""Stage ``search``: one hybrid first-stage query (BM25 + dense legs, fused) over the tenant's index."""

from __future__ import annotations

from typing import Any

from fathom.config import RetrievalSettings
from fathom.retrieval.bm25 import Bm25Encoder
from fathom.retrieval.guard import Reason
from fathom.retrieval.query_pipeline import OnDeadline, RetrievalState, Stage
from fathom.retrieval.rerank.interface import Candidate
from fathom.retrieval.store.contract import IndexNotFound, SearchRequest, VectorStore


class FirstStageSearch(Stage):
    """Writes the fused ``candidates``, best first, ties broken by id; an index version that vanished
    (dropped by a reindex in between) is ``empty_index``."""

    name = timing = "search"
    on_deadline = OnDeadline.FAIL
    reads = frozenset({"query", "version", "mode", "dense", "head"})
    writes = frozenset({"candidates"})
    parts = ("store",)

    def __init__(self, store: VectorStore, bm25: Bm25Encoder, settings: RetrievalSettings, *, hnsw_ef: int):
        self.store = store
        self.bm25 = bm25
        self.settings = settings
        self.hnsw_ef = hnsw_ef

    def run(self, state: RetrievalState) -> None:
        q, s = state.query, self.settings
        limit = state.head * 3 if q.unique_documents else state.head   # chunks of one document collapse: fetch more
        req = SearchRequest(
            tenant=q.tenant, mode=state.mode, limit=limit, dense=state.dense, sparse=self.bm25.encode_query(q.text),
            prefetch_limit=max(s.prefetch_limit, limit), fusion=s.fusion, rrf_k=s.rrf_k,
            hnsw_ef=self.hnsw_ef, filter=q.filter, version=state.version,
        )
        try:
            found = self.store.search(req)
        except IndexNotFound:
            state.candidates, state.reasons, state.version = [], [Reason.EMPTY_INDEX], None
            state.halt()
            return
        # Ties in fused scores come back in no fixed order; break them by id so a query is repeatable
        # (the reindex gate compares recall across versions and must not see noise).
        hits = sorted(drop_superseded(found), key=lambda h: (-h.score, h.id))
        if q.unique_documents:
            seen: set[str] = set()
            hits = [h for h in hits if not (h.document_id in seen or seen.add(h.document_id))]
        state.candidates = [Candidate(hit=h, fused_score=h.score, fused_rank=i) for i, h in enumerate(hits)]


def drop_superseded(hits: list[Any]) -> list[Any]:
    """While a changed document is being replaced, old and new chunks may coexist for a moment.

    Writers add the new version before deleting the old one (so a document is
    never missing); readers drop chunks of a document whose newer version is
    also in the result, so the two are never mixed in one answer.
    """
    newest: dict[str, int] = {}
    for h in hits:
        v = int(h.payload.get("doc_version", 0))
        newest[h.document_id] = max(newest.get(h.document_id, v), v)
    return [h for h in hits if int(h.payload.get("doc_version", 0)) == newest[h.document_id]]
