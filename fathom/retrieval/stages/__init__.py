"""The retrieval pipeline's stages, one module each, in the order the standard pipeline runs them.

The contract they implement (``Stage``, ``RetrievalState``, ``OnDeadline``) and the runner are in
``fathom.retrieval.query_pipeline``; the standard list is wired in ``fathom.retrieval.components``.
"""

from fathom.retrieval.stages.attach_vectors import AttachVectors
from fathom.retrieval.stages.embed_query import EmbedQuery, QueryEmbedder
from fathom.retrieval.stages.flag import FlagInjection
from fathom.retrieval.stages.guard import Guard
from fathom.retrieval.stages.judge import Judge
from fathom.retrieval.stages.rerank import Rerank
from fathom.retrieval.stages.resolve_index import ResolveIndex
from fathom.retrieval.stages.search import FirstStageSearch

__all__ = ["AttachVectors", "EmbedQuery", "FirstStageSearch", "FlagInjection", "Guard", "Judge", "QueryEmbedder",
           "Rerank", "ResolveIndex"]
