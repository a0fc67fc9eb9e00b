"""The stored text of a document at a version, read from the registry (context assembly's ``DocumentSource``).

The registry keeps each document's normalised elements; the chunker cut its
chunks out of ``"\\n\\n".join(element texts)`` (``ParsedDocument.text``), so
rebuilding that string here gives exactly the characters chunk offsets point
into. Lookups are always by tenant, and a document is returned only at the
version asked for: one re-ingested since its chunks were retrieved is left
out, and assembly falls back to the chunks' own text.
"""

from __future__ import annotations

from collections.abc import Sequence

from fathom.ingest.document import Element, ParsedDocument
from fathom.ingest.registry import Registry
from fathom.retrieval.context.types import Block, StoredDocument
from fathom.retrieval.tenancy import Tenant


def stored_document(document_id: str, doc_version: int, elements: list[Element],
                    content_hash: str | None = None) -> StoredDocument:
    """The document's text (as the chunker saw it) with one block per element."""
    blocks, offset = [], 0
    for i, e in enumerate(elements):
        offset += 2 if i else 0
        blocks.append(Block(offset, offset + len(e.text), tuple(e.section_path), e.page_number, e.is_heading))
        offset += len(e.text)
    text = ParsedDocument(elements, "", "").text
    return StoredDocument(document_id, doc_version, text, tuple(blocks), content_hash)


class RegistryDocuments:
    """``DocumentSource`` over the document registry: one query per assembly, whatever the number of documents."""

    def __init__(self, registry: Registry):
        self.registry = registry

    def documents(self, tenant: Tenant, wanted: Sequence[tuple[str, int]]) -> dict[tuple[str, int], StoredDocument]:
        want = set(wanted)
        out: dict[tuple[str, int], StoredDocument] = {}
        for document_id, version, digest, elements in self.registry.stored_elements(tenant,
                                                                                     sorted({d for d, _ in want})):
            if (document_id, version) in want:   # the query is scoped by tenant; a version since changed is left out
                out[(document_id, version)] = stored_document(document_id, version, elements, digest)
        return out
