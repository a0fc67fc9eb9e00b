"""Distillation: a smaller, faster student trained on a teacher reranker's scores.

Latency on 2 cores grows with layers x tokens x pairs, and the teacher is
what a 40 ms budget cannot afford at useful depth. The student keeps the
teacher's first N layers and head, sees shorter inputs, and regresses the
teacher's logits (MSE) on every mined passage: the teacher labels for free
what the qrels never judged, so the student gets far more signal per query
than 0/1 labels give.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from fathom.retrieval.models.onnx_cross_encoder import OnnxCrossEncoder
from fathom.retrieval.rerank.cross_encoder import ServingConfig
from fathom.training.rerank.card import HF_DIR, ModelCard, read_card
from fathom.training.rerank.data import QueryList
from fathom.training.rerank.evaluate import ScoredLists, Scorer
from fathom.training.rerank.run import BEFORE_QUERIES, TrainingData, finish, fresh_dir, onnx_scorer
from fathom.training.rerank.trainer import Row, TrainConfig, fit, init_cross_encoder, torch_scorer

Log = Callable[[str], None]


def teacher_rows(scorer: Scorer, lists: Sequence[QueryList], log: Log) -> list[Row]:
    """(query, passage, teacher logit) for every passage of every list, the first stage's and the unseen positives."""
    rows: list[Row] = []
    step = max(1, math.ceil(len(lists) / 10))
    for n, ql in enumerate(lists, start=1):
        passages = [i.passage for i in ql.items] + list(ql.unseen_positives)
        rows.extend((ql.query, p, float(s)) for p, s in zip(passages, scorer(ql.query, passages)))
        if n % step == 0 or n == len(lists):
            log(f"  teacher scored {n}/{len(lists)} queries ({len(rows)} pairs)")
    return rows


def distil_reranker(data: TrainingData, teacher_dir: Path, cfg: TrainConfig, out_dir: Path, *, command: str,
                    log: Log = print) -> ModelCard:
    """Train a smaller student (``cfg.layers`` layers, ``cfg.max_length`` tokens) to reproduce a teacher's logits.

    The student starts from the teacher's own first layers and head, and
    learns from the teacher's scores on every mined passage, not just the
    sampled negatives: the teacher labels for free what qrels never judged.
    """
    teacher_card = read_card(teacher_dir)
    teacher = OnnxCrossEncoder(teacher_dir, threads=cfg.threads)
    teacher_scorer = onnx_scorer(teacher, int(teacher_card["max_length"]))
    log(f"scoring {len(data.train)} training queries with teacher {teacher_dir.name} ({teacher.model_path.name})")
    rows = teacher_rows(teacher_scorer, data.train, log)
    teacher_val = ScoredLists.score(teacher_scorer, data.validation)
    teacher_serving = ServingConfig(blend_weight=float(teacher_card["serving"]["blend_weight"]))
    teacher_info = {"name": teacher_dir.name, "layers": teacher_card["layers"], "max_length": teacher_card["max_length"],
                    "base": teacher_card["base"], "ndcg@10_validation": round(teacher_val.ndcg(), 4),
                    "ndcg@10_validation_blend": round(teacher_val.ndcg(teacher_serving), 4), "pairs_scored": len(rows)}
    log(f"teacher on this validation slice: {teacher_info}")
    fresh_dir(out_dir)
    cfg = replace(cfg, loss="mse")
    with tempfile.TemporaryDirectory(prefix="fathom-ce-student-") as scratch:
        init = init_cross_encoder(teacher_dir / HF_DIR, Path(scratch), cfg.layers, cfg.seed)
        log("scoring the validation slice with the untrained student (the teacher's first layers)")
        before = ScoredLists.score(torch_scorer(init, cfg.max_length, cfg.threads), data.validation[:BEFORE_QUERIES])
        stats = fit(init, rows, cfg, out_dir / HF_DIR, log)
    return finish(out_dir, data, cfg, stats, before, name=out_dir.name, kind="distilled", command=command,
                   base=teacher_card["base"], teacher=teacher_info, log=log)
