"""The study behind README "Could a tenant without a golden set calibrate from its corpus alone?".

On one kept bench index, with the judge's fit protocol (every judged query asked as is and with its judged
documents excluded, ``fathom.retrieval.judge.fit.collect``), it compares the judge's confidence on real questions
under: the shipped default; a tenant calibration fitted on pseudo-queries (``fathom/benchmarks/pseudo_queries.py``)
at each ``--keep``; the default applied to features shifted by the difference between this corpus's pseudo-query
feature means and a reference corpus's (``--reference``, written by ``--write-reference``); and a 2-fold
calibration on the real questions themselves (what a golden set gives). Prints ROC AUC, ECE, the share of
answerable / unanswerable questions under ``FATHOM_GUARD__MIN_CONFIDENCE`` and the feature means::

    FATHOM_INGEST__EMBED_MPNET=false FATHOM_RERANK__KIND=none .venv/bin/python scripts/pseudo_calibration_study.py \\
        ../shared/data/scifact --split train --index .fathom/bench/guard/scifact --keep 0.3,0.45,0.6,0.8,1.0 \\
        --write-reference ref.json
    FATHOM_INGEST__EMBED_MPNET=false FATHOM_RERANK__KIND=none .venv/bin/python scripts/pseudo_calibration_study.py \\
        ../shared/data/cacm --index .fathom/bench/guard/cacm --keep 0.6 --reference ref.json

(the kept indexes are the ones ``fathom bench guard --keep-index .fathom/bench/guard`` builds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from fathom.benchmarks.answer_stats import expected_calibration_error, roc_auc
from fathom.benchmarks.pseudo_queries import tenant_pseudo_golden
from fathom.benchmarks.quality import build_index
from fathom.retrieval.components import build_pipeline
from fathom.retrieval.judge.calibration import BASE_LOGIT, sigmoid
from fathom.retrieval.judge.fit import Example, collect, fit_tenant
from fathom.retrieval.judge.model import columns
from fathom.service.core.config import get_settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--index", type=Path, required=True, help="a kept bench index folder (DIR/<dataset>)")
    ap.add_argument("--keep", default="0.6", help="shares of a sentence's words the pseudo-queries keep")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--reference", type=Path, help="pseudo-query feature means of another corpus (moment matching)")
    ap.add_argument("--write-reference", type=Path, help="write this corpus's pseudo-query feature means here")
    args = ap.parse_args()
    settings = get_settings()
    index = build_index(args.dataset, settings, split=args.split, state_dir=args.index, log=lambda _: None)
    try:
        pipeline = build_pipeline(index.settings, index.store, index.models)
        judge = pipeline.judge
        names = judge.model.answer.features
        qrels = {q: r for q, r in index.dataset.qrels.items() if q in index.dataset.queries}
        real = collect(pipeline, index.tenant, [(index.dataset.queries[q], tuple(sorted(r)))
                                                for q, r in sorted(qrels.items())])
        y = np.array([e.label for e in real])
        topic = np.array([judge.topic(e.answer["max_cos"]) if judge.topic else 1.0 for e in real])
        x_real = columns([e.answer for e in real], names)
        threshold = settings.guard.min_confidence

        def report(name: str, evidence: np.ndarray) -> None:
            conf = topic * evidence
            pos, neg = conf[y == 1], conf[y == 0]
            print(f"{name:>18}: AUC {roc_auc(list(pos), list(neg)):.3f}  ECE "
                  f"{expected_calibration_error(list(conf), list(y)):.3f}  answerable rejected "
                  f"{np.mean(pos < threshold):.3f}  unanswerable rejected {np.mean(neg < threshold):.3f}")

        def tenant_rows(examples: list[Example]) -> list[dict[str, Any]]:
            return [{BASE_LOGIT: e.base_answer_logit, **e.answer} for e in examples]

        print(f"{len(real)} real examples, {int(y.sum())} with evidence in the head")
        print("real feature means:", _means(x_real, names))
        report("default", sigmoid(judge.model.answer.logit(x_real)))
        references: dict[str, list[float]] = {}
        for keep in (float(k) for k in args.keep.split(",")):
            pseudo = collect(pipeline, index.tenant, tenant_pseudo_golden(index.store, index.tenant, args.queries,
                                                                          keep=keep))
            found = np.mean([e.label for e in pseudo if not e.withheld])
            x_pseudo = columns([e.answer for e in pseudo], names)
            print(f"keep {keep}: {len(pseudo) // 2} pseudo-queries, source found as is {found:.3f}; "
                  f"feature means {_means(x_pseudo, names)}")
            cal = fit_tenant(pseudo, judge.model)
            report(f"pseudo fit {keep}", cal.answer.probability(columns(tenant_rows(real), cal.answer.features)))
            if args.reference:
                ref = np.array(json.loads(args.reference.read_text())["mean"][str(keep)])   # the same keep's means
                report(f"moment match {keep}", sigmoid(judge.model.answer.logit(x_real - x_pseudo.mean(0) + ref)))
            references[str(keep)] = x_pseudo.mean(0).tolist()
        if args.write_reference:
            args.write_reference.write_text(json.dumps({"names": list(names), "mean": references}))
        halves = set(sorted({e.query for e in real})[::2])
        conf = np.zeros(len(real))
        for fit_half in (True, False):
            cal = fit_tenant([e for e in real if (e.query in halves) == fit_half], judge.model)
            rows = [i for i, e in enumerate(real) if (e.query in halves) != fit_half]
            conf[rows] = cal.answer.probability(columns(tenant_rows([real[i] for i in rows]), cal.answer.features))
        report("golden, 2-fold", conf)
    finally:
        index.close()


def _means(x: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    return {n: round(float(v), 3) for n, v in zip(names, x.mean(0))}


if __name__ == "__main__":
    main()
