"""The per-request record that metrics, traces and logs are made from.

The request middleware creates one :class:`RequestContext` and puts it in a
context variable. FastAPI runs sync endpoints and dependencies in worker
threads with a *copy* of the context, so code there reaches the same object
and mutates it in place (tenant, stage timings); a value set there would not
travel back, an attribute of a shared object does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span

from fathom.service.observability.tracing import Tracing


@dataclass(slots=True)
class RequestContext:
    request_id: str
    method: str
    path: str
    started: float                                   # time.monotonic() at arrival: the deadline counts from here
    tracing: Tracing
    span: Span | None = None
    tenant: str | None = None
    stages_ms: dict[str, float] = field(default_factory=dict)
    log_fields: dict[str, Any] = field(default_factory=dict)   # added to the access log line

    def add_ms(self, stage: str, ms: float) -> None:
        self.stages_ms[stage] = self.stages_ms.get(stage, 0.0) + ms

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage (summed if it runs twice) inside a child span of the request span."""
        with self.tracing.child(self.span, name):
            t0 = time.perf_counter()
            try:
                yield
            finally:
                self.add_ms(name, (time.perf_counter() - t0) * 1000.0)

    def span_only(self, name: str) -> Any:
        """A child span without timing, for stages that time themselves (the retrieval pipeline's)."""
        return self.tracing.child(self.span, name)


_current: ContextVar[RequestContext | None] = ContextVar("fathom_request", default=None)


def current() -> RequestContext | None:
    return _current.get()


def activate(ctx: RequestContext) -> Any:
    return _current.set(ctx)


def deactivate(token: Any) -> None:
    _current.reset(token)


def stage(name: str) -> Any:
    """Time ``name`` in the current request, or do nothing outside one (CLI, workers)."""
    ctx = _current.get()
    return ctx.stage(name) if ctx is not None else nullcontext()
