"""A process-wide LRU of stored documents, so that assembly does not read the registry for every answer.

Reading and unpacking a document's elements from the registry was the
largest single cost of assembling a context (~30 % of it, SQLite, for the
~20 documents a head names). The same documents come back across answers,
so they are kept here, keyed by **tenant, document id, version and content
hash**: a hit is the very text the chunks were cut from. The content hash
is in the key because a document deleted and written again starts at
version 1 again; without it a stale text could answer for the new version
(assembly would then reject it, since the chunks' offsets no longer agree,
and lose the stitching). A chunk without a content hash never uses the
cache. Bounded by characters held, not by entries: one 10 MB document must
not keep 4,000 small ones out, nor the reverse.
"""

from __future__ import annotations

from fathom.retrieval.context.lru import SizedLRU
from fathom.retrieval.context.types import StoredDocument

CacheKey = tuple[str, str, int, str]   # tenant id, document id, version, content hash


class DocumentCache:
    def __init__(self, max_chars: int):
        self._lru: SizedLRU[CacheKey, StoredDocument] = SizedLRU(max_chars)
        self.hits = 0
        self.misses = 0

    def get(self, tenant_id: str, document_id: str, version: int, content_hash: str | None) -> StoredDocument | None:
        if content_hash is None:
            return None
        doc = self._lru.get((tenant_id, document_id, version, content_hash))
        if doc is None:
            self.misses += 1
        else:
            self.hits += 1
        return doc

    def put(self, tenant_id: str, doc: StoredDocument) -> None:
        if doc.content_hash is not None:
            self._lru.put((tenant_id, doc.document_id, doc.doc_version, doc.content_hash), doc, len(doc.text))

    def __len__(self) -> int:
        return len(self._lru)
