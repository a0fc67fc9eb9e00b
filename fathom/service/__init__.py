"""HTTP service, CLI and workers around the retrieval core.

Layering: ``service`` may import ``ingest`` and ``retrieval``; nothing imports ``service``.
"""
import fathom.ingest  # noqa: F401  (sets DO_NOT_TRACK & co. before anything can import unstructured)
