"""The retrieval pipeline: an explicit, ordered list of stages run by a thin runner.

The standard list (built in one place, :func:`fathom.retrieval.components.build_pipeline`)::

    resolve_index -> embed -> search -> attach_vectors -> rerank -> guard -> flag

Each stage is a small component with one job (``fathom/retrieval/stages/``, one
module each; Haystack 2.x components are the model): configured and given its
parts at construction, it reads and writes named fields of the per-request
:class:`RetrievalState` and declares which (``reads``/``writes``), so the
runner can refuse a list in which a stage reads what no earlier stage wrote.
A new stage (a relevance judge between ``rerank`` and ``guard``, context
assembly after ``guard``, an access filter after ``resolve_index``) is one more
component in the list, or :meth:`RetrievalPipeline.inserted`.

Between stages the runner checks the request deadline; what happens when it
has passed is the stage's ``on_deadline``: ``FAIL`` (nothing to answer with
yet: :class:`DeadlineExceeded`, the API's 504), ``SKIP`` (the stage is left
out and the answer goes out degraded, ``deadline_exceeded``) or ``RUN``.
A stage can add reasons (a degrading one marks the answer degraded, see
``guard.DEGRADING``), :meth:`~RetrievalState.halt` (the remaining search
stages are skipped; the ``finishing`` ones, the guard and what follows it,
still run) or :meth:`~RetrievalState.finish` with a final status.

One instance serves many concurrent requests (FastAPI's thread pool): the
stages hold the model sessions (created once) and the store; every call
carries its own tenant, deadline and policy in its own state object.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, TypeVar

import numpy as np

from fathom.retrieval.guard import DEGRADING, GuardDecision, GuardPolicy, Reason, Status
from fathom.retrieval.judge.judge import JudgeOutput
from fathom.retrieval.rerank.interface import Candidate, Deadline
from fathom.retrieval.store.contract import MetadataFilter, Mode
from fathom.retrieval.tenancy import Tenant

# Opens a tracing span around one stage. The service passes OpenTelemetry spans; retrieval stays free of tracing code.
StageSpan = Callable[[str], AbstractContextManager[Any]]


@dataclass(frozen=True, slots=True)
class RetrievalQuery:
    tenant: Tenant
    text: str
    top_k: int = 10
    mode: Mode = "hybrid"
    rerank: bool = True
    filter: MetadataFilter | None = None
    unique_documents: bool = False     # at most one chunk per document (used by document-level evaluation)
    policy: GuardPolicy = GuardPolicy()
    deadline: Deadline | None = None
    dense: np.ndarray | None = None    # precomputed query embedding (e.g. by the semantic cache), else embedded here
    version: int | None = None         # a given index version (the reindex gate scores one before it goes live); None: live

    def __post_init__(self) -> None:
        if not isinstance(self.tenant, Tenant):
            raise TypeError("RetrievalQuery needs a Tenant")


@dataclass(slots=True)
class RetrievalResult:
    status: Status
    reasons: list[Reason]
    confidence: float
    candidates: list[Candidate]
    reranker: str | None
    index_version: int | None
    timings_ms: dict[str, float] = field(default_factory=dict)
    judge: JudgeOutput | None = None        # the relevance judge's verdict (None: it did not run, or failed)

    def __post_init__(self) -> None:
        if self.status in (Status.OK, Status.DEGRADED) and not self.candidates:
            raise AssertionError("an empty context is never ok")

    @property
    def degraded(self) -> list[str]:
        return [r.value for r in self.reasons if r in DEGRADING]

    @property
    def flags(self) -> list[str]:
        """Union of the returned chunks' content flags (e.g. ``prompt_injection``), sorted."""
        return sorted({f for c in self.candidates for f in c.flags})


class DeadlineExceeded(TimeoutError):
    """The request's deadline passed before the pipeline had any context to return (the API answers 504)."""


@dataclass(slots=True)
class RetrievalState:
    """One request on its way through the stages. Fields are filled in list order; each stage names what it
    reads and writes (``Stage.reads``/``Stage.writes``)."""

    query: RetrievalQuery
    head: int                               # fused candidates the later stages look at (top_k, or a rerank depth)
    vector_names: tuple[str, ...]           # stored vectors later stages asked for (besides the dense one)
    reasons: list[Reason] = field(default_factory=list)
    version: int | None = None              # the index version searched (None: nothing indexed)
    mode: Mode = "hybrid"                   # the search mode actually run (bm25 when the embedder failed)
    dense: np.ndarray | None = None         # the query embedding (None in bm25 mode)
    candidates: list[Candidate] = field(default_factory=list)   # fused, then reranked order
    reranker: str | None = None             # the reranker whose order went out (None: fused order)
    rerank_calibration: Callable[[float], float | None] | None = None   # that reranker's score -> confidence
    judge: JudgeOutput | None = None        # the relevance judge's verdict on the head (chunk probabilities set)
    decision: GuardDecision | None = None   # the guard's verdict (or a stage's final status, see finish())
    halted: bool = False

    def halt(self) -> None:
        """Skip the remaining search stages; the finishing ones (guard onwards) still run."""
        self.halted = True

    def finish(self, status: Status, reason: Reason) -> None:
        """Decide the answer now (an access filter's refusal, a judge's verdict): no chunks go out.

        ``status`` is a final one without context (``no_relevant_context``); the guard keeps this decision.
        """
        if status in (Status.OK, Status.DEGRADED):
            raise ValueError("a stage may only finish without context; the guard decides ok/degraded")
        self.candidates = []
        self.decision = GuardDecision(status, [*self.reasons, reason], 0.0, [])
        self.halt()


class OnDeadline(Enum):
    FAIL = "fail"      # nothing to answer with yet: DeadlineExceeded (504)
    SKIP = "skip"      # leave the stage out; the answer goes out degraded (deadline_exceeded)
    RUN = "run"        # runs regardless: cheap work that turns what there is into an answer


# Fields the runner fills before the first stage.
_INITIAL = frozenset({"query", "head", "vector_names", "reasons"})


class Stage:
    """One step of the pipeline. Subclasses set the class attributes and implement :meth:`run`."""

    name: ClassVar[str]                      # span name and the name used by RetrievalPipeline.stage/inserted
    timing: ClassVar[str | None] = None      # key in timings_ms (stages may share one); None: neither timed nor traced
    on_deadline: ClassVar[OnDeadline] = OnDeadline.RUN
    finishing: ClassVar[bool] = False        # runs after a halt too (the guard and what follows it)
    reads: ClassVar[frozenset[str]] = frozenset()
    writes: ClassVar[frozenset[str]] = frozenset()
    parts: ClassVar[tuple[str, ...]] = ()    # swappable parts it holds ("store", "embedder", "reranker")

    def applies(self, state: RetrievalState) -> bool:
        """False: skipped for this request without a word (no deadline check, no reason)."""
        return True

    def head_size(self, query: RetrievalQuery) -> int:
        """How many fused candidates this stage looks at (the search fetches at least the largest)."""
        return 0

    def vectors(self, query: RetrievalQuery) -> tuple[str, ...]:
        """Stored vectors this stage needs on the head candidates (fetched by attach_vectors)."""
        return ()

    def run(self, state: RetrievalState) -> None:
        raise NotImplementedError


S = TypeVar("S", bound=Stage)


class _Timer:
    def __init__(self, span: StageSpan | None) -> None:
        self.ms: dict[str, float] = {}
        self.span = span

    def run(self, stage: Stage, state: RetrievalState) -> None:
        if stage.timing is None:
            stage.run(state)
            return
        with self.span(stage.name) if self.span is not None else nullcontext():
            t0 = time.perf_counter()
            try:
                stage.run(state)
            finally:
                self.ms[stage.timing] = self.ms.get(stage.timing, 0.0) + (time.perf_counter() - t0) * 1000.0


class RetrievalPipeline:
    """Runs the stages in order for each query; holds no per-request state."""

    def __init__(self, stages: Sequence[Stage]):
        available = set(_INITIAL)
        for stage in stages:
            missing = stage.reads - available
            if missing:
                raise ValueError(f"stage {stage.name!r} reads {sorted(missing)}, which no earlier stage writes")
            available |= stage.writes
        if "decision" not in available:
            raise ValueError("no stage decides the answer (the guard writes 'decision')")
        self.stages: tuple[Stage, ...] = tuple(stages)

    # --- the list ------------------------------------------------------------------
    def stage(self, kind: type[S]) -> S:
        """The (first) stage of that class, e.g. ``pipeline.stage(Rerank).settings``."""
        for s in self.stages:
            if isinstance(s, kind):
                return s
        raise KeyError(f"no {kind.__name__} stage in {[s.name for s in self.stages]}")

    def inserted(self, stage: Stage, *, after: str | None = None, before: str | None = None) -> "RetrievalPipeline":
        """A new pipeline with ``stage`` placed after/before the stage of that name (same parts, same settings)."""
        names = [s.name for s in self.stages]
        anchor = after if after is not None else before
        if (after is None) == (before is None) or anchor not in names:
            raise ValueError(f"insert after or before one of {names}")
        at = names.index(anchor) + (1 if after is not None else 0)
        return RetrievalPipeline([*self.stages[:at], stage, *self.stages[at:]])

    # The parts callers swap (benchmarks compare rerankers, fault tests wrap the embedder or the store); each is held
    # by the stages that name it in ``parts``.
    def _part(self, name: str) -> Any:
        return next((getattr(s, name) for s in self.stages if name in s.parts), None)

    def _set_part(self, name: str, value: Any) -> None:
        holders = [s for s in self.stages if name in s.parts]
        if not holders:
            raise AttributeError(f"no stage holds a {name}")
        for s in holders:
            setattr(s, name, value)

    store = property(lambda self: self._part("store"), lambda self, v: self._set_part("store", v))
    embedder = property(lambda self: self._part("embedder"), lambda self, v: self._set_part("embedder", v))
    reranker = property(lambda self: self._part("reranker"), lambda self, v: self._set_part("reranker", v))
    judge = property(lambda self: self._part("judge"), lambda self, v: self._set_part("judge", v))

    # --- entry point ---------------------------------------------------------------
    def retrieve(self, q: RetrievalQuery, span: StageSpan | None = None) -> RetrievalResult:
        """Run the stages. Raises ``StoreUnavailable`` when the store is down (the API maps it to 503).

        ``q.deadline`` is checked before each stage (see the module docstring): past it before the search
        there is nothing to return (``DeadlineExceeded``); past it before reranking the fused order goes out,
        degraded.
        """
        timer = _Timer(span)
        t_start = time.perf_counter()
        state = RetrievalState(q, head=max([q.top_k, *(s.head_size(q) for s in self.stages)]),
                               vector_names=tuple(dict.fromkeys(n for s in self.stages for n in s.vectors(q))))
        for stage in self.stages:
            if state.halted and not stage.finishing:
                continue
            if not stage.applies(state):
                continue
            if q.deadline is not None and q.deadline.remaining_ms() <= 0:
                if stage.on_deadline is OnDeadline.FAIL:
                    raise DeadlineExceeded(f"request deadline passed before {stage.timing or stage.name}")
                if stage.on_deadline is OnDeadline.SKIP:
                    state.reasons.append(Reason.DEADLINE_EXCEEDED)
                    continue
            timer.run(stage, state)
        timer.ms["total"] = (time.perf_counter() - t_start) * 1000.0
        d = state.decision
        assert d is not None   # the constructor checked that a stage writes it, and the guard always runs
        return RetrievalResult(d.status, d.reasons, d.confidence, d.kept, state.reranker, state.version, timer.ms,
                               state.judge)
