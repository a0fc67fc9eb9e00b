"""Stage ``resolve_index``: the index version to search (the live one unless the query names one)."""

from __future__ import annotations

from fathom.retrieval.guard import Reason
from fathom.retrieval.query_pipeline import RetrievalState, Stage
from fathom.retrieval.store.contract import VectorStore


class ResolveIndex(Stage):
    """Nothing indexed for the tenant: ``empty_index``, and the search stages are skipped."""

    name = "resolve_index"
    reads = frozenset({"query"})
    writes = frozenset({"version"})
    parts = ("store",)

    def __init__(self, store: VectorStore):
        self.store = store

    def run(self, state: RetrievalState) -> None:
        q = state.query
        state.version = q.version or self.store.live_version(q.tenant)
        if state.version is None:
            state.reasons = [Reason.EMPTY_INDEX]
            state.halt()
