"""Context assembly: token-budgeted passages with citations and highlights, built after the guard decided.

``ContextAssembler(tokenizer, documents[, cache]).run(ContextInput) -> ContextOutput``
is the one entry point (see ``assembler``); ``types`` has the shapes,
``tokens`` the tokenizers. Retrieval never reads documents itself: the
service hands in a ``DocumentSource`` (the registry, in the ingest layer).
"""

from fathom.retrieval.context.assembler import ContextAssembler
from fathom.retrieval.context.document_cache import DocumentCache
from fathom.retrieval.context.tokens import PromptTokenizer, load_tokenizer
from fathom.retrieval.context.types import (Block, Citation, ContextChunk, ContextInput, ContextOptions, ContextOutput,
                                            DocumentSource, Duplicate, Highlight, Passage, StoredDocument)

__all__ = ["Block", "Citation", "ContextAssembler", "ContextChunk", "ContextInput", "ContextOptions", "ContextOutput",
           "DocumentCache", "DocumentSource", "Duplicate", "Highlight", "Passage", "PromptTokenizer", "StoredDocument", "load_tokenizer"]
