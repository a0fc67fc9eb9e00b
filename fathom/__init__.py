"""Fathom: a production RAG retrieval service (retrieval, ingest, service; benchmarks and training on top)."""
