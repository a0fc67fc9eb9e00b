"""Ingestion: parse real documents, normalise, chunk, tag and write them to the index.

Layering: ``ingest`` may import ``retrieval``; never ``service``.
"""
import os

# unstructured phones home on import (a 10 s blocking GET when traffic is
# dropped) unless this is set, so set it before anything can import it.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("SCARF_NO_ANALYTICS", "1")
os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
