"""Serving must run without torch: importing it costs ~7 s and ~400 MB per process.

The check runs in a fresh interpreter, because this test process has torch
loaded already (the model tests use it as a reference).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from retrieval.settings import get_settings

REPO = Path(__file__).resolve().parent.parent
# Every serving-side module; add new ones here.
SERVING_MODULES = [
    "retrieval.models.embedder",
    "retrieval.models.cross_encoder",
    "retrieval.pipeline",
    "retrieval.rerank.cross_encoder",
    "ingest.pipeline",
    "ingest.parse",
    "service.app",
    "service.cli",
]
FORBIDDEN = ["torch", "transformers", "sentence_transformers"]

SCRIPT = """
import importlib, json, sys
for name in {modules!r}:
    importlib.import_module(name)
import tempfile
from pathlib import Path
from retrieval.models.embedder import load_embedder
from retrieval.models.specs import MINILM
from retrieval.pipeline import RetrievalQuery
from retrieval.settings import get_settings
from retrieval.tenancy import Tenant
from service.cli import SAMPLE_CORPUS, ingest_paths
from service.runtime import Runtime
vectors = load_embedder(MINILM).embed(["serving needs no torch", "second text"])
assert vectors.shape == (2, MINILM.dim), vectors.shape
# The whole serving path: parse real files, chunk, embed (MiniLM + mpnet), write, retrieve with reranking.
with tempfile.TemporaryDirectory() as tmp:
    rt = Runtime.open(get_settings().model_copy(update={{"state_dir": Path(tmp), "registry_url": None}}))
    ingest_paths(rt, "t", [SAMPLE_CORPUS], {{}}, quiet=True)
    res = rt.pipeline.retrieve(RetrievalQuery(Tenant("t"), "waggle dance"))
    assert res.candidates and res.reranker, res
    rt.close()
print(json.dumps(sorted(m for m in {forbidden!r} if m in sys.modules)))
"""


@pytest.mark.slow
def test_serving_modules_never_load_torch(prepared_models: dict[str, Any]) -> None:
    env = {**os.environ, "FATHOM_MODELS__DIR": str(get_settings().model_dir), "PYTHONPATH": str(REPO)}
    script = SCRIPT.format(modules=SERVING_MODULES, forbidden=FORBIDDEN)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
