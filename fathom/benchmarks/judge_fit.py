"""``fathom judge fit``: fit the relevance judge's shipped default model from a judged *train* split.

    fathom judge fit --dataset ../shared/data/scifact --split train --keep-index DIR \\
        --out fathom/retrieval/judge/weights/judge.json

The corpus is ingested (or a kept index reused), every judged query of the
split is asked through the real pipeline twice, as it is and with its judged
documents excluded from the search (``fathom/retrieval/judge/fit.py``), and the
chunk and answer models are fitted on what the judge saw. The guard's default
operating point is read off the same training questions (never a test split),
each scored out of fold (5 folds by question, ``operating_point``):
``min_confidence`` the highest threshold that loses at most 5 % of the answerable
examples, ``min_chunk_confidence`` the highest that keeps 98 % of the evidence
chunks of answerable heads. The model file records the command, the data, the
counts, the in-sample figures and that operating point.
"""

from __future__ import annotations

import json
import random
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fathom.benchmarks.answer_stats import roc_auc
from fathom.benchmarks.quality import build_index
from fathom.benchmarks.config import data_dir
from fathom.config import Settings
from fathom.retrieval.calibration import Logistic
from fathom.retrieval.components import build_pipeline
from fathom.retrieval.judge.calibration import JudgeModel, sigmoid
from fathom.retrieval.judge.fit import Example, collect, fit_default
from fathom.retrieval.judge.judge import RelevanceJudge
from fathom.retrieval.stages import Judge

ANSWERABLE_LOSS = 0.05
EVIDENCE_KEPT = 0.98
OPERATING_FOLDS = 5


def _folds(examples: list[Example], folds: int) -> list[int]:
    """Each example's fold, by question: a question's two asks (with and without its evidence) share one."""
    questions = sorted({e.query for e in examples})
    random.Random(0).shuffle(questions)
    fold_of = {q: i % folds for i, q in enumerate(questions)}
    return [fold_of[e.query] for e in examples]


def _scores(model: JudgeModel, examples: list[Example], topic: Logistic) -> tuple[np.ndarray, list[float]]:
    """The served confidence of each example, and the chunk probability of each evidence chunk of answerable ones."""
    from fathom.retrieval.judge.model import columns

    evidence = sigmoid(model.answer.logit(columns([e.answer for e in examples], model.answer.features)))
    conf = evidence * np.array([topic(e.answer["max_cos"]) for e in examples])
    chunks = [float(p) for e in examples if e.label for p, y in
              zip(sigmoid(model.chunk.logit(columns(e.chunks, model.chunk.features))), e.chunk_labels) if y]
    return conf, chunks


def operating_point(model: JudgeModel, examples: list[Example], topic: Logistic,
                    folds: int = OPERATING_FOLDS) -> dict[str, float | str]:
    """Guard thresholds for the served confidence, P(on topic) x P(evidence | on topic), read off the training
    split's questions **out of fold**: each question is scored by a model fitted on the other folds (``folds``,
    grouped by question). Read in-sample, as the first shipped default was, the thresholds come out too high for
    questions the model never saw: it fits its own training questions better than new ones, so a threshold that
    loses 5 % of the training questions loses more of new ones. ``model`` gives the in-sample AUC beside it."""
    fold = _folds(examples, folds)
    conf = np.zeros(len(examples))
    chunks: list[float] = []
    for k in range(folds):
        held = [i for i, f in enumerate(fold) if f == k]
        fitted = fit_default([e for e, f in zip(examples, fold) if f != k], depth=model.depth)
        held_conf, held_chunks = _scores(fitted, [examples[i] for i in held], topic)
        conf[held] = held_conf
        chunks += held_chunks
    labels = np.array([e.label for e in examples])
    pos = np.sort(conf[labels == 1])
    min_conf = float(pos[int(np.floor(ANSWERABLE_LOSS * len(pos)))])
    min_chunk = float(np.sort(chunks)[int(np.floor((1 - EVIDENCE_KEPT) * len(chunks)))])
    in_sample, _ = _scores(model, examples, topic)
    return {"min_confidence": round(min_conf, 3), "min_chunk_confidence": round(min_chunk, 3),
            "answerable_loss": ANSWERABLE_LOSS, "evidence_chunks_kept": EVIDENCE_KEPT,
            "read": f"{folds}-fold, out of fold",
            "auc_out_of_fold": round(roc_auc(conf[labels == 1], conf[labels == 0]) or 0.0, 4),
            "auc_in_sample": round(roc_auc(in_sample[labels == 1], in_sample[labels == 0]) or 0.0, 4)}


def cmd_judge_fit(args: Any, settings: Settings) -> int:
    dataset = Path(args.dataset) if args.dataset else data_dir() / "scifact"
    if args.split == "test":
        raise SystemExit("fathom: the judge's default is fitted on a train split; the test split is for reporting")
    log = (lambda _: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    index = build_index(dataset, settings, split=args.split, log=log,
                        state_dir=Path(args.keep_index) if args.keep_index else None)
    try:
        # Features first, from a judge with no model yet (there may be none to load).
        unjudged = index.settings.model_copy(update={"judge": index.settings.judge.model_copy(update={"enabled": False})})
        pipeline = build_pipeline(unjudged, index.store, index.models).inserted(
            Judge(RelevanceJudge(JudgeModel.null(args.depth), budget_ms=10_000.0)), after="rerank")
        golden = [(index.dataset.queries[q], tuple(sorted(rel))) for q, rel in sorted(index.dataset.qrels.items())
                  if q in index.dataset.queries]
        t0 = time.perf_counter()
        examples = collect(pipeline, index.tenant, golden)
        collect_s = time.perf_counter() - t0
    finally:
        index.close()
    command = ["fathom", "judge", "fit", "--dataset", str(args.dataset or dataset), "--split", args.split,
               "--depth", str(args.depth), "--out", str(args.out)]
    model = fit_default(examples, depth=args.depth, provenance={
        "command": shlex.join(command), "dataset": dataset.name, "split": args.split,
        "negatives": "each query asked again with its judged documents excluded from the search",
        "collect_s": round(collect_s, 1)})
    model = JudgeModel(model.chunk, model.answer, model.depth,
                       {**model.provenance, "operating_point": operating_point(
                           model, examples, Logistic(*settings.guard.dense_calibration))})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(model.to_json(), indent=1) + "\n", encoding="utf-8")
    print(json.dumps(model.provenance, indent=2))
    print(f"wrote {out}")
    return 0


def add_judge_fit_command(judge: Any) -> None:
    fit = judge.add_parser("fit", help="fit the judge's default model on a judged train split (writes the JSON)")
    fit.add_argument("--dataset", help="BEIR folder (default: <data_dir>/scifact)")
    fit.add_argument("--split", default="train")
    fit.add_argument("--depth", type=int, default=10, help="head size the answer features are computed on")
    fit.add_argument("--keep-index", metavar="DIR", help="keep the ingested index in DIR and reuse it")
    fit.add_argument("--out", required=True, help="model JSON to write (the shipped one: "
                                                  "fathom/retrieval/judge/weights/judge.json)")
    fit.add_argument("--quiet", action="store_true")
    fit.set_defaults(fn=cmd_judge_fit)
