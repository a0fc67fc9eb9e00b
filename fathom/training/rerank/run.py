"""Train (or distil), export, verify, calibrate and document a reranker in one call.

The steps, in order: build the starting model; score the validation slice with
it ("before"); train within the time budget; export to ONNX and quantise int8
per channel; score the slice with fp32 and int8 ONNX and keep int8 only if it
ranks like fp32; fit the fused-score blend and the confidence calibration on
the slice; write the model card last.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fathom.retrieval.models.onnx_cross_encoder import OnnxCrossEncoder
from fathom.training.prepare import export_cross_encoder
from fathom.retrieval.models.specs import ONNX_INT8
from fathom.retrieval.rerank.cross_encoder import ServingConfig
from fathom.training.rerank.card import HF_DIR, ModelCard
from fathom.training.rerank.data import QueryList
from fathom.retrieval.calibration import Logistic
from fathom.training.rerank.evaluate import ScoredLists, Scorer, first_stage_ndcg, fit_answerable, guard_rates
from fathom.training.rerank.mining import training_pairs
from fathom.training.rerank.trainer import (TrainConfig, TrainStats, base_source, fit, init_cross_encoder,
                                               layer_count, torch_scorer)

Log = Callable[[str], None]

# The starting model is scored with torch on this many validation queries only: at 256 tokens torch scores
# ~5 pairs/s on a loaded 2-core machine, and an untrained head ranks near randomly anyway. "After" is
# reported on the same queries too, so the two figures compare like for like.
BEFORE_QUERIES = 40
# int8 is served only if it ranks the validation lists like fp32 does.
INT8_MIN_SPEARMAN = 0.95
INT8_MAX_NDCG_DROP = 0.01


@dataclass(slots=True)
class TrainingData:
    """Mined query lists, already split, and where they came from (for the card)."""

    train: list[QueryList]
    validation: list[QueryList]
    offtopic: list[QueryList]         # off-topic queries' first-stage lists (all negatives), for calibration
    source: dict[str, Any]            # dataset or tenant, split, mode, counts by kind
    mining: dict[str, Any]            # MiningConfig and MiningStats
    # Judged validation (qrels, golden set) can fit the blend. Pseudo-query lists cannot: the first stage finds
    # a pseudo-query's source document by its verbatim text, so a fitted weight would learn that leak.
    labelled: bool = True


def onnx_scorer(encoder: OnnxCrossEncoder, max_length: int) -> Scorer:
    return lambda query, passages: encoder.score(query, passages, max_length).astype(np.float64)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks = lambda x: np.argsort(np.argsort(x)).astype(np.float64)  # noqa: E731
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1]) if a.size > 1 else 1.0


def check_int8(fp32: ScoredLists, int8: ScoredLists) -> dict[str, Any]:
    """int8 vs fp32 logits on the validation lists: rank agreement, worst difference, nDCG of each."""
    a, b = np.concatenate(fp32.logits), np.concatenate(int8.logits)
    per_list = [_spearman(x, y) for x, y in zip(fp32.logits, int8.logits) if x.size > 1]
    result = {"pairs": int(a.size), "spearman": round(_spearman(a, b), 4),
              "spearman_per_list_mean": round(float(np.mean(per_list)), 4) if per_list else None,
              "max_abs_diff": round(float(np.abs(a - b).max()), 4), "ndcg@10_fp32": round(fp32.ndcg(), 4),
              "ndcg@10_int8": round(int8.ndcg(), 4)}
    result["passed"] = (result["spearman"] >= INT8_MIN_SPEARMAN
                        and result["ndcg@10_int8"] >= result["ndcg@10_fp32"] - INT8_MAX_NDCG_DROP)
    return result


def _served_scores(out_dir: Path, data: TrainingData, cfg: TrainConfig, int8_exported: bool,
                   log: Log) -> tuple[ScoredLists, OnnxCrossEncoder, dict[str, Any]]:
    """Validation scores of the file that will be served, and the int8-vs-fp32 check that decided it.

    int8 is compared with fp32 on the first validation queries (fp32 costs twice
    as much); if it fails, its file is removed and fp32 scores the whole slice.
    """
    fp32_encoder = OnnxCrossEncoder(out_dir, threads=cfg.threads, quantized=False)
    compare = data.validation[:BEFORE_QUERIES]
    if int8_exported:
        log("scoring the validation slice with the int8 model, and its first queries with fp32 too")
        int8_encoder = OnnxCrossEncoder(out_dir, threads=cfg.threads)
        int8 = ScoredLists.score(onnx_scorer(int8_encoder, cfg.max_length), data.validation)
        fp32_head = ScoredLists.score(onnx_scorer(fp32_encoder, cfg.max_length), compare)
        check = check_int8(fp32_head, int8.head(len(fp32_head.lists)))
        log(f"int8 vs fp32 on {len(fp32_head.lists)} validation queries: {check}")
        if check["passed"]:
            return int8, int8_encoder, check
        (out_dir / ONNX_INT8).unlink(missing_ok=True)
    else:
        check = {"passed": False, "reason": "int8 export failed its check against torch"}
    log("scoring the validation slice with the fp32 model")
    return ScoredLists.score(onnx_scorer(fp32_encoder, cfg.max_length), data.validation), fp32_encoder, check


def finish(out_dir: Path, data: TrainingData, cfg: TrainConfig, stats: TrainStats, before: ScoredLists,
           *, name: str, kind: str, command: str, base: dict[str, Any], teacher: dict[str, Any] | None,
           log: Log) -> ModelCard:
    """Export, verify int8 against fp32, fit blend + calibration, write the card."""
    manifest = export_cross_encoder(out_dir / HF_DIR, out_dir, log=log)
    served, served_encoder, int8_check = _served_scores(out_dir, data, cfg, manifest["int8_ok"], log)
    if data.labelled:
        weight, table = served.fit_blend()
        blend_rule = "fitted: best validation nDCG@10 over multiples of the logit spread"
    else:
        weight, table = round(served.spread(), 3), {}
        blend_rule = "equal weight (the logit spread), not fitted: pseudo-query lists leak their source document"
    blended = ServingConfig(blend_weight=weight)
    on_topic = served.best_scores(blended)
    off_topic = ScoredLists.score(onnx_scorer(served_encoder, cfg.max_length), data.offtopic,
                                  judged=False).best_scores(blended)
    fit = fit_answerable(on_topic, off_topic) if on_topic.size and off_topic.size else None
    calibration_rule = "P(answerable | best served score), classes balanced: validation queries vs off-topic queries"
    # No fit, or higher scores for off-topic queries than for answerable ones (an undertrained model): the card
    # records the raw sigmoid for reference and serving falls back to the guard's dense calibration.
    calibrated = fit is not None and fit.a > 0
    fitted = fit if calibrated else Logistic(1.0, 0.0)
    if not calibrated:
        calibration_rule = "raw sigmoid: no usable fit (no lists to fit on, or a non-positive slope)"
    serving = ServingConfig(blend_weight=weight, calibration_a=round(fitted.a, 4), calibration_b=round(fitted.b, 4),
                            calibrated=calibrated, depth=cfg.serve_depth, max_length=cfg.max_length)
    validation = {
        "queries": len(served.lists),
        "labelled": data.labelled,
        "ndcg@10_first_stage": round(first_stage_ndcg(data.validation), 4),
        "before_queries": len(before.lists),
        "ndcg@10_before": round(before.ndcg(), 4),
        "ndcg@10_after_on_before_queries": round(served.head(len(before.lists)).ndcg(), 4),
        "ndcg@10_after": round(served.ndcg(), 4),
        "ndcg@10_after_blend": round(served.ndcg(serving), 4),
        "blend_rule": blend_rule,
        "blend_table": table,
        "served_precision": "int8" if int8_check["passed"] else "fp32",
    }
    calibration = {
        "method": calibration_rule,
        "on_topic_queries": int(on_topic.size), "off_topic_queries": int(off_topic.size),
        "score_at_p50": round(fitted.at(0.5), 4) if fitted.a else None,
        "raw_sigmoid": guard_rates(Logistic(1.0, 0.0), on_topic, off_topic),
        "fitted": guard_rates(fitted, on_topic, off_topic),
    }
    card = ModelCard(name=name, kind=kind, command=command, base=base, layers=layer_count(out_dir / HF_DIR),
                     max_length=cfg.max_length, data={"source": data.source, "mining": data.mining},
                     training={"config": cfg.as_dict(), **stats.as_dict()}, validation=validation,
                     export={"int8_vs_torch": manifest["verification"], "int8_vs_fp32_validation": int8_check,
                             "timings_s": manifest["timings_s"], "file_sizes": manifest["file_sizes"]},
                     calibration=calibration, serving=serving, teacher=teacher)
    card.write(out_dir)
    log(f"validation nDCG@10: first stage {validation['ndcg@10_first_stage']}, before {validation['ndcg@10_before']}, "
        f"after {validation['ndcg@10_after']}, after blend (w={weight:g}) {validation['ndcg@10_after_blend']}")
    return card


def fresh_dir(out_dir: Path) -> None:
    """A rerun replaces the folder's model; the card goes first so a crash never leaves a stale one."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)


def train_reranker(data: TrainingData, cfg: TrainConfig, out_dir: Path, *, command: str, log: Log = print) -> ModelCard:
    """Fine-tune MiniLM (first ``cfg.layers`` layers) on ``data`` and write a served reranker to ``out_dir``."""
    base_dir, base = base_source()
    rows = training_pairs(data.train, cfg.negatives_per_query, cfg.seed)
    log(f"{len(rows)} training pairs from {len(data.train)} queries; {len(data.validation)} validation queries")
    fresh_dir(out_dir)
    with tempfile.TemporaryDirectory(prefix="fathom-ce-init-") as scratch:
        init = init_cross_encoder(base_dir, Path(scratch), cfg.layers, cfg.seed)
        log("scoring the validation slice before training")
        before = ScoredLists.score(torch_scorer(init, cfg.max_length, cfg.threads), data.validation[:BEFORE_QUERIES])
        stats = fit(init, rows, cfg, out_dir / HF_DIR, log)
    return finish(out_dir, data, cfg, stats, before, name=out_dir.name, kind="trained", command=command,
                   base=base, teacher=None, log=log)
