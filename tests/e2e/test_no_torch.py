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

from fathom.service.core.config import get_settings
from tests.support import REPO

# Every serving-side module; add new ones here.
SERVING_MODULES = [
    "fathom.retrieval.models.embedder",
    "fathom.retrieval.models.onnx_cross_encoder",
    "fathom.retrieval.query_pipeline",
    "fathom.retrieval.rerank.cross_encoder",
    "fathom.retrieval.judge.judge",
    "fathom.retrieval.judge.fit",
    "fathom.ingest.ingest_pipeline",
    "fathom.ingest.parse",
    "fathom.service.app",
    "fathom.service.cli",
]
FORBIDDEN = ["torch", "transformers", "sentence_transformers"]

SCRIPT = """
import importlib, json, sys
if {blocked!r}:   # as in the runtime image, where these are not installed at all: importing them fails
    for name in {forbidden!r}:
        sys.modules[name] = None
for name in {modules!r}:
    importlib.import_module(name)
import tempfile
from pathlib import Path
from fathom.retrieval.models.embedder import load_embedder
from fathom.retrieval.models.specs import MINILM
from fathom.retrieval.guard import GuardPolicy
from fathom.retrieval.query_pipeline import RetrievalQuery
from fathom.service.core.config import get_settings
from fathom.retrieval.tenancy import Tenant
from fathom.service.cli import SAMPLE_CORPUS, ingest_paths
from fathom.service.runtime import Runtime
vectors = load_embedder(MINILM).embed(["serving needs no torch", "second text"])
assert vectors.shape == (2, MINILM.dim), vectors.shape
# The whole serving path: parse real files, chunk, embed (MiniLM + mpnet), write, retrieve with reranking and
# the relevance judge.
with tempfile.TemporaryDirectory() as tmp:
    s = get_settings()
    rt = Runtime.open(s.model_copy(update={{"state_dir": Path(tmp), "registry_url": None,
                                            "rerank": s.rerank.model_copy(update={{"kind": "mpnet"}}),
                                            "ingest": s.ingest.model_copy(update={{"embed_mpnet": True}})}}))
    ingest_paths(rt, "t", [SAMPLE_CORPUS], {{}}, quiet=True)
    policy = GuardPolicy(s.guard.min_confidence, s.guard.min_chunk_confidence)   # the served defaults
    res = rt.pipeline.retrieve(RetrievalQuery(Tenant("t"), "How do honeybees tell each other where flowers are?",
                                              policy=policy))
    assert res.candidates and res.reranker and res.judge, res
    rt.close()
print(json.dumps(sorted(m for m in {forbidden!r} if sys.modules.get(m) is not None)))
"""


@pytest.mark.slow
@pytest.mark.parametrize("blocked", [False, True], ids=["installed-but-unused", "not-installed"])
def test_serving_modules_never_load_torch(prepared_models: dict[str, Any], blocked: bool) -> None:
    env = {**os.environ, "FATHOM_MODELS__DIR": str(get_settings().model_dir), "PYTHONPATH": str(REPO)}
    script = SCRIPT.format(modules=SERVING_MODULES, forbidden=FORBIDDEN, blocked=blocked)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def _runtime_stage(dockerfile: str) -> str:
    """The Dockerfile's last stage: what the served image is made of."""
    return dockerfile[dockerfile.rindex("\nFROM "):]


def test_runtime_image_installs_only_serving_requirements() -> None:
    """The runtime stage installs the base package (no export/train extras) and fails its build if torch got in."""
    import tomllib

    stage = _runtime_stage((REPO / "Dockerfile").read_text())
    installs = [line for line in stage.replace("\\\n", " ").splitlines() if "pip install" in line]
    assert installs and not any(x in stage for x in ("[export", "[train", "torch==", "sentence-transformers"))
    assert "find_spec('torch')" in stage and "USER 10001" in stage and "HEALTHCHECK" in stage
    base = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in base if d.split("[")[0].split("=")[0].split(">")[0].strip().lower() in
                ("torch", "transformers", "sentence-transformers", "torchvision")]


@pytest.mark.slow
def test_runtime_requirements_resolve_without_torch(tmp_path: Path) -> None:
    """What the runtime stage's ``pip install -c constraints.txt . ./vendor/en_core_web_sm`` would install, resolved
    from scratch (``--dry-run --ignore-installed``): no torch, no transformers. With the blocked-import run above,
    that is the runtime image's promise: it installs without torch and serves without it."""
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed",
                           "--report", str(report), "-c", "constraints.txt", ".", "./vendor/en_core_web_sm"],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"onnxruntime", "tokenizers", "fastapi", "qdrant-edge-py"} <= names
    assert not names & {"torch", "torchvision", "transformers", "sentence-transformers"}, sorted(names)
