"""Cross-encoder reranking on onnxruntime: any HF-format cross-encoder, from a local folder.

Production users point ``FATHOM_RERANK__CROSS_ENCODER_DIR`` at a model they
downloaded at image-build time (e.g. an ms-marco MiniLM cross-encoder) or at
one trained with ``fathom reranker train``. A folder with only HF weights is
exported once with ``fathom models export-cross-encoder DIR`` (needs the
``export`` extra); serving then needs onnxruntime and tokenizers only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from fathom.retrieval.calibration import Logistic
from fathom.retrieval.models.onnx_cross_encoder import OnnxCrossEncoder
from fathom.retrieval.models.specs import ONNX_FP32
from fathom.retrieval.rerank.interface import Candidate, Deadline, RerankTimeout

# Written by `fathom reranker train|distil` beside the ONNX files.
MODEL_CARD = "model_card.json"


def format_passage(section: str, text: str) -> str:
    """Section path, then body: the one passage format for serving, training and validation."""
    return f"{section}\n{text}" if section else text


def passage_text(c: Candidate) -> str:
    """The passage as indexed: section path, then body (what the first stage matched on)."""
    return format_passage(c.hit.payload.get("section") or "", c.hit.text)


def first_stage_prior(fused_scores: Sequence[float]) -> np.ndarray:
    """Fused scores divided by the best one: 1.0 for the fused top, less below it.

    Relative on purpose: RRF scores depend on the constant k and the number of
    legs, so only their ratio within one query carries over between setups.
    """
    fused = np.asarray(fused_scores, dtype=np.float64)
    top = fused.max() if fused.size else 0.0
    return fused / top if top > 0 else np.zeros_like(fused)


@dataclass(frozen=True, slots=True)
class ServingConfig:
    """How a model's logits become the served score and its confidence; fitted on validation data.

    ``score = logit + blend_weight * first_stage_prior``: interpolation with the
    fused order, which a reranker trained on little data should not overrule
    lightly. ``confidence = sigmoid(a * score + b)``: the guard's calibrated
    P(answerable | score) (fathom/retrieval/calibration.py), fitted like the other
    signals' (a held-out judged slice vs off-topic queries, classes balanced);
    a raw sigmoid of a BCE logit only reflects the label balance it was trained on.
    """

    blend_weight: float = 0.0
    calibration_a: float = 1.0
    calibration_b: float = 0.0
    calibrated: bool = False          # the card holds a fitted calibration (not the raw-sigmoid fallback)
    # Served by default at the length it was trained at and at the depth the rerank curve chose for the
    # latency budget (FATHOM_RERANK__DEPTH / __MAX_LENGTH override both); None: the settings' kind-wide default.
    depth: int | None = None
    max_length: int | None = None

    @classmethod
    def read(cls, model_dir: Path) -> "ServingConfig":
        """The card's ``serving`` entry; a folder without a card (a third-party model) is served as is."""
        card = Path(model_dir) / MODEL_CARD
        if not card.is_file():
            return cls()
        serving = json.loads(card.read_text(encoding="utf-8")).get("serving", {})
        sizes = {k: int(serving[k]) for k in ("depth", "max_length") if serving.get(k) is not None}
        return cls(**{k: float(v) for k, v in serving.items() if k in ("blend_weight", "calibration_a", "calibration_b")},
                   calibrated=bool(serving.get("calibrated", False)), **sizes)

    @property
    def calibration(self) -> Logistic:
        return Logistic(self.calibration_a, self.calibration_b)

    def blend(self, logits: np.ndarray, fused_scores: Sequence[float]) -> np.ndarray:
        if not self.blend_weight:
            return np.asarray(logits, dtype=np.float64)
        return np.asarray(logits, dtype=np.float64) + self.blend_weight * first_stage_prior(fused_scores)


class CrossEncoderReranker:
    needs_vectors: tuple[str, ...] = ()

    def __init__(self, encoder: OnnxCrossEncoder, name: str, serving: ServingConfig = ServingConfig()):
        self.encoder = encoder
        self.name = name
        self.serving = serving

    @classmethod
    def from_dir(cls, path: Path, *, threads: int = 2, quantized: bool = True) -> "CrossEncoderReranker":
        path = Path(path)
        if not (path / ONNX_FP32).is_file():
            raise FileNotFoundError(
                f"{path} has no {ONNX_FP32}; export it once with `fathom models export-cross-encoder {path}`")
        encoder = OnnxCrossEncoder(path, threads=threads, quantized=quantized)
        # The name says when fp32 is served (asked for, or no verified int8 file), so figures are never mixed up.
        suffix = ":fp32" if encoder.model_path.name == ONNX_FP32 else ""
        return cls(encoder, f"cross-encoder:{path.name}{suffix}", ServingConfig.read(path))

    def score(self, query: str, candidates: list[Candidate], *, max_length: int, deadline: Deadline) -> list[float]:
        """One session run over all pairs; cancelled (not just abandoned) when the budget runs out."""
        if not candidates:
            return []
        run_options = ort.RunOptions()
        timer = threading.Timer(max(deadline.remaining_ms(), 0.0) / 1000.0, lambda: setattr(run_options, "terminate", True))
        timer.start()
        try:
            logits = self.encoder.score(query, [passage_text(c) for c in candidates], max_length=max_length,
                                        run_options=run_options)
        except Exception as exc:
            if run_options.terminate:
                raise RerankTimeout("cross-encoder passed its time budget") from exc
            raise
        finally:
            timer.cancel()
        return [float(s) for s in self.serving.blend(logits, [c.fused_score for c in candidates])]

    @property
    def default_depth(self) -> int | None:
        return self.serving.depth

    @property
    def default_max_length(self) -> int | None:
        return self.serving.max_length

    def confidence(self, score: float) -> float | None:
        """Calibrated P(answerable) when the model card holds a fitted calibration. Otherwise None, and the
        guard judges the chunk by its calibrated dense cosine: an unfitted mapping of a blended logit can
        score off-topic queries as high as answerable ones (seen on a 2-layer model: 0.998 for both)."""
        return self.serving.calibration(score) if self.serving.calibrated else None
