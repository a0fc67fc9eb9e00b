"""Benchmarks: retrieval quality on judged datasets, latency under load, scale.

Numbers are always reported next to a baseline measured in the same run.
"""
