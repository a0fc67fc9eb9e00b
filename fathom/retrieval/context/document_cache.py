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

import threading
from collections import OrderedDict

from fathom.retrieval.context.types import StoredDocument

CacheKey = tuple[str, str, int, str]   # tenant id, document id, version, content hash


class DocumentCache:
    def __init__(self, max_chars: int):
        self.max_chars = max_chars
        self._docs: OrderedDict[CacheKey, StoredDocument] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, tenant_id: str, document_id: str, version: int, content_hash: str | None) -> StoredDocument | None:
        if content_hash is None:
            return None
        key = (tenant_id, document_id, version, content_hash)
        with self._lock:
            doc = self._docs.get(key)
            if doc is None:
                self.misses += 1
                return None
            self._docs.move_to_end(key)
            self.hits += 1
            return doc

    def put(self, tenant_id: str, doc: StoredDocument) -> None:
        if doc.content_hash is None or len(doc.text) > self.max_chars:
            return
        key = (tenant_id, doc.document_id, doc.doc_version, doc.content_hash)
        with self._lock:
            if key in self._docs:
                return
            self._docs[key] = doc
            self._chars += len(doc.text)
            while self._chars > self.max_chars:
                _, old = self._docs.popitem(last=False)
                self._chars -= len(old.text)

    def __len__(self) -> int:
        return len(self._docs)
