"""Fitting the judge from questions with known evidence, with no labelled negatives.

A query whose evidence is known becomes an **on-topic unanswerable** example
when that evidence is filtered out of the search (``MetadataFilter.exclude_documents``):
the rest of the corpus still looks relevant, which is exactly the case the guard
must catch. So each (query, expected documents) pair is asked twice through the
real pipeline:

* as it is: label 1 if the judged head holds an expected document, else 0;
* with the expected documents excluded: label 0.

Chunks are labelled by whether their document is expected. The same
collection fits the shipped default (``fathom judge fit`` on SciFact *train*)
and a tenant's own calibration (``fathom judge calibrate`` on its golden set);
nothing here is dataset-specific. scikit-learn does the fitting (imported here
only); serving evaluates the coefficients in numpy.

Cost: two pipeline queries per golden query (~10-30 ms each on 2 cores), plus a
fit that takes milliseconds: a 150-query golden set calibrates in a few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from fathom.retrieval.guard import GuardPolicy
from fathom.retrieval.judge.calibration import BASE_LOGIT, JudgeModel, TenantCalibration
from fathom.retrieval.judge.features import ANSWER_FEATURES, CHUNK_FEATURES
from fathom.retrieval.judge.model import LogisticModel, columns
from fathom.retrieval.store.contract import MetadataFilter
from fathom.retrieval.tenancy import Tenant

OPEN = GuardPolicy(min_confidence=0.0, min_chunk_confidence=0.0)
MIN_PER_CLASS = 5
Progress = Callable[[int, int], None]


class CalibrationError(ValueError):
    """Not enough usable examples to fit (say which and how many)."""


@dataclass(slots=True)
class Example:
    """One asked question: its judge features and labels."""

    query: str
    withheld: bool                    # asked with its expected documents excluded
    label: int                        # the judged head holds an expected document
    answer: dict[str, float]
    chunks: list[dict[str, float]]
    chunk_labels: list[int]
    base_answer_logit: float
    base_chunk_logit: list[float]


def collect(pipeline: Any, tenant: Tenant, golden: Sequence[tuple[str, Sequence[str]]],
            progress: Progress | None = None) -> list[Example]:
    """Ask every golden query twice (as is, and with its expected documents excluded) and keep what the judge saw."""
    from fathom.retrieval.query_pipeline import RetrievalQuery

    judge = pipeline.judge
    if judge is None:
        raise CalibrationError("the pipeline has no judge to calibrate")
    out: list[Example] = []
    for n, (query, expected) in enumerate(golden, start=1):
        wanted = set(expected)
        for withheld in (False, True):
            flt = MetadataFilter({}, exclude_documents=tuple(sorted(wanted))) if withheld else None
            res = pipeline.retrieve(RetrievalQuery(tenant, query, top_k=judge.depth, filter=flt, policy=OPEN))
            if res.judge is None:      # nothing found, or the judge failed: no example
                continue
            docs = [c.hit.document_id for c in res.candidates]
            chunk_labels = [int(d in wanted) for d in docs]
            label = int(any(chunk_labels[: judge.depth]))
            out.append(Example(query, withheld, label, dict(res.judge.answer_features),
                               [dict(c) for c in res.judge.chunk_features], chunk_labels,
                               res.judge.base_answer_logit, list(res.judge.base_chunk_logit)))
        if progress:
            progress(n, len(golden))
    return out


def _logistic(x: np.ndarray, y: np.ndarray, features: Sequence[str], c: float) -> LogisticModel:
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    lr = LogisticRegression(C=c, max_iter=5000).fit((x - mean) / scale, y)
    return LogisticModel(tuple(features), tuple(map(float, mean)), tuple(map(float, scale)),
                         tuple(map(float, lr.coef_[0])), float(lr.intercept_[0]))


def _check(labels: Sequence[int], what: str) -> None:
    pos = int(sum(labels))
    if pos < MIN_PER_CLASS or len(labels) - pos < MIN_PER_CLASS:
        raise CalibrationError(f"{what}: {pos} positive and {len(labels) - pos} negative examples; at least "
                               f"{MIN_PER_CLASS} of each are needed (a larger golden set, or expected documents "
                               "that the search finds)")


def _summary(examples: Sequence[Example]) -> dict[str, int]:
    return {"questions": len({e.query for e in examples}), "asked": len(examples),
            "with_evidence_found": sum(e.label for e in examples),
            "withheld": sum(e.withheld for e in examples)}


def fit_default(examples: Sequence[Example], *, depth: int, provenance: dict[str, Any] | None = None,
                c: float = 1.0) -> JudgeModel:
    """The shipped model: logistic regressions on the chunk and answer features."""
    _check([e.label for e in examples], "answer model")
    chunk_names, answer_names = CHUNK_FEATURES, ANSWER_FEATURES
    rows = [r for e in examples for r in e.chunks]
    chunk_y = np.array([y for e in examples for y in e.chunk_labels])
    _check(list(chunk_y), "chunk model")
    chunk = _logistic(columns(rows, chunk_names), chunk_y, chunk_names, c)
    answer = _logistic(columns([e.answer for e in examples], answer_names),
                       np.array([e.label for e in examples]), answer_names, c)
    return JudgeModel(chunk, answer, depth, {**(provenance or {}), "examples": _summary(examples),
                                                    "fitted_at": _now()})


def fit_tenant(examples: Sequence[Example], base: JudgeModel, *, provenance: dict[str, Any] | None = None,
               c: float = 0.1) -> TenantCalibration:
    """The tenant's maps of the default model's log-odds (strongly regularised: golden sets are small)."""
    labels = np.array([e.label for e in examples])
    _check(list(labels), "tenant calibration")
    names = (BASE_LOGIT, *base.answer.features)
    answer = _logistic(columns([{BASE_LOGIT: e.base_answer_logit, **e.answer} for e in examples], names),
                       labels, names, c)
    chunk_x = np.array([[z] for e in examples for z in e.base_chunk_logit])
    chunk_y = np.array([y for e in examples for y in e.chunk_labels])
    _check(list(chunk_y), "tenant chunk calibration")
    chunk = _logistic(chunk_x, chunk_y, (BASE_LOGIT,), 1.0)
    return TenantCalibration(answer, chunk, {**(provenance or {}), "examples": _summary(examples),
                                             "fitted_at": _now()})


def calibrate_tenant(pipeline: Any, tenant: Tenant, golden: Sequence[tuple[str, Sequence[str]]], *,
                     provenance: dict[str, Any] | None = None, progress: Progress | None = None) -> TenantCalibration:
    """Collect from the tenant's golden set and fit; the provenance records how long both took and how many asks
    gave no example (nothing found, or the judge failed or overran its budget on a busy machine: ``not_judged``)."""
    t0 = time.perf_counter()
    examples = collect(pipeline, tenant, golden, progress)
    t1 = time.perf_counter()
    calibration = fit_tenant(examples, pipeline.judge.model, provenance={
        **(provenance or {}), "collect_s": round(t1 - t0, 2), "fit_s": round(time.perf_counter() - t1, 3),
        "not_judged": 2 * len(golden) - len(examples)})
    return calibration


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
