"""Retrieval core: models, BM25, vector stores, hybrid search, reranking, guards.

This package is the bottom layer: it never imports ``ingest`` or ``service``.
"""
