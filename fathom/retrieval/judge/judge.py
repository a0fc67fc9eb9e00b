"""The relevance judge: one component, ``run(JudgeInput) -> JudgeOutput``.

It turns the fused head into

* a calibrated probability per chunk that the chunk is relevant evidence for
  the query (the guard drops chunks under ``min_chunk_confidence`` by it), and
* an answer-level ``confidence``: the probability that the head the pipeline
  judged (its first ``depth`` chunks) contains evidence that answers the query.
  This is the number the guard compares with ``min_confidence``.

``confidence = P(on topic) x P(evidence | on topic)``. The second factor is the
judge's answer model (``weights/judge.json``, mapped through the tenant's own
calibration when one was fitted with ``fathom judge calibrate``); it was fitted
on on-topic questions only (with and without their evidence), so it says
nothing reliable about a question from another domain. The first factor is
the guard's dense-cosine logistic of the best chunk (fitted on judged queries
vs off-topic questions, ``fathom bench calibrate``), which is what tells those
apart (96-99 % of another dataset's questions rejected on its own).

Failures are explicit: anything the judge raises reaches the pipeline as a
:class:`JudgeError` (answer ``degraded``, ``judge_failed``); a run that ends
past its budget raises :class:`JudgeTimeout` (``judge_timeout``). Neither is
ever turned into an ``ok`` at the old confidence.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fathom.retrieval.calibration import Logistic
from fathom.retrieval.judge.calibration import BASE_LOGIT, JudgeModel, TenantCalibrations, sigmoid
from fathom.retrieval.judge.features import HeadChunk, answer_features, chunk_features, query_terms
from fathom.retrieval.judge.model import columns
from fathom.retrieval.rerank.interface import Deadline
from fathom.retrieval.tenancy import Tenant


class JudgeError(RuntimeError):
    """The judge could not judge this head (an unreadable calibration file, a missing vector, ...)."""


class JudgeTimeout(JudgeError):
    """The judge ran past its budget; its verdict is not used."""


@dataclass(frozen=True, slots=True)
class JudgeInput:
    tenant: Tenant
    query: str
    head: Sequence[HeadChunk]          # in fused order (what the models were fitted on)
    deadline: Deadline | None = None   # the request's; the judge's own budget applies too


@dataclass(frozen=True, slots=True)
class JudgeOutput:
    chunk_probability: tuple[float, ...]     # per head chunk, in input order
    confidence: float                        # P(the first `depth` chunks hold evidence for the query)
    on_topic: float                          # P(on topic): the dense-cosine logistic of the best chunk
    evidence: float                          # P(evidence | on topic): the answer model
    calibration: str                         # "default" or "tenant"
    answer_features: dict[str, float]
    chunk_features: tuple[dict[str, float], ...]
    base_answer_logit: float                 # the default model's log-odds (what a tenant calibration maps)
    base_chunk_logit: tuple[float, ...]
    ms: float


class RelevanceJudge:
    name = "judge"

    def __init__(self, model: JudgeModel, *, topic: Logistic | None = None, tenants: TenantCalibrations | None = None,
                 budget_ms: float = 100.0):
        self.model = model
        self.topic = topic              # None: every question counts as on topic (P = 1)
        self.tenants = tenants
        self.budget_ms = budget_ms

    @property
    def depth(self) -> int:
        return self.model.depth

    def run(self, inp: JudgeInput) -> JudgeOutput:
        started = time.monotonic()
        budget = self.budget_ms if inp.deadline is None else min(self.budget_ms, max(inp.deadline.remaining_ms(), 0.0))
        deadline = Deadline(started + budget / 1000.0)
        try:
            out = self._judge(inp, started)
        except JudgeError:
            raise
        except Exception as exc:      # anything else is a judge failure too, never a silent default
            raise JudgeError(f"{type(exc).__name__}: {exc}") from exc
        if time.monotonic() > deadline.at:
            raise JudgeTimeout(f"the judge took {out.ms:.1f} ms, over its {budget:.0f} ms budget")
        return out

    def _judge(self, inp: JudgeInput, started: float) -> JudgeOutput:
        if not inp.head:
            raise JudgeError("nothing to judge")
        head = list(inp.head)
        chunks = chunk_features(query_terms(inp.query), head)
        answer = answer_features(head[: self.depth], chunks[: self.depth])
        base_chunk = self.model.chunk.logit(columns(chunks, self.model.chunk.features))
        base_answer = float(self.model.answer.logit(columns([answer], self.model.answer.features))[0])
        tenant = self.tenants.get(inp.tenant) if self.tenants is not None else None
        if tenant is None:
            chunk_p, evidence, which = sigmoid(base_chunk), float(sigmoid(base_answer)), "default"
        else:
            chunk_p = tenant.chunk.probability(base_chunk[:, None])
            row: dict[str, Any] = {BASE_LOGIT: base_answer, **answer}
            evidence = float(tenant.answer.probability(columns([row], tenant.answer.features))[0])
            which = "tenant"
        on_topic = self.topic(answer["max_cos"]) if self.topic is not None else 1.0
        confidence = on_topic * evidence
        if not np.all(np.isfinite(chunk_p)) or not np.isfinite(confidence):
            raise JudgeError("non-finite probability")
        return JudgeOutput(tuple(float(p) for p in chunk_p), confidence, on_topic, evidence, which, answer,
                           tuple(chunks), base_answer, tuple(float(z) for z in base_chunk),
                           (time.monotonic() - started) * 1000.0)
