"""The model card: what a trained reranker was made from, how, and how well it did.

Written last, as ``model_card.json`` beside the ONNX files, so a folder with a
card is a finished model. Serving reads only its ``serving`` entry
(:class:`fathom.retrieval.rerank.cross_encoder.ServingConfig`); the rest is the record
an operator needs to trust or reproduce the model: the data (never a test
split), the base weights' hash, the steps, the validation figures before and
after training, and the int8-vs-fp32 check.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fathom.retrieval.rerank.cross_encoder import MODEL_CARD, ServingConfig

HF_DIR = "hf"                         # the trained HF weights, inside the reranker's folder
TOOLS = ("torch", "transformers", "sentence-transformers", "datasets", "accelerate", "onnx", "onnxruntime")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(slots=True)
class ModelCard:
    name: str
    kind: str                         # trained | distilled
    command: str                      # the one command that reproduces the folder
    base: dict[str, Any]              # package, version, sha256 of the starting weights
    layers: int
    max_length: int
    data: dict[str, Any]              # source, split, mode, query counts, mining settings and stats
    training: dict[str, Any]          # config and TrainStats
    validation: dict[str, Any]        # nDCG@10 before/after, blend table
    export: dict[str, Any]            # ONNX manifest summary and the int8-vs-fp32 check
    calibration: dict[str, Any]
    serving: ServingConfig
    teacher: dict[str, Any] | None = None
    tools: dict[str, str | None] = field(default_factory=lambda: {t: _version(t) for t in TOOLS})
    host: dict[str, Any] = field(default_factory=lambda: {"cpus": os.cpu_count(),
                                                          "load_avg_1m": round(os.getloadavg()[0], 2)})
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["serving"] = asdict(self.serving)
        return data

    def write(self, folder: Path) -> Path:
        path = folder / MODEL_CARD
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2), encoding="utf-8")
        tmp.replace(path)
        return path


def read_card(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MODEL_CARD).read_text(encoding="utf-8"))
