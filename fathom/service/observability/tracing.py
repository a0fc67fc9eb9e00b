"""OpenTelemetry traces: one span per request and one per stage under it. Off by default.

Each runtime owns its TracerProvider instead of installing the global one, so
two runtimes in one process (tests) never fight over it, and an exporter of
``none`` costs nothing: no provider, no spans. An incoming W3C ``traceparent``
header is honoured, so a caller's trace continues through Fathom.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from fathom.service.core.config import ObservabilitySettings

_PROPAGATOR = TraceContextTextMapPropagator()


class Tracing:
    def __init__(self, exporter: SpanExporter | None = None, *, service_name: str = "fathom", batch: bool = True):
        """``batch=False`` exports each span as it ends (tests); production batches off the request path."""
        self.provider: TracerProvider | None = None
        self._tracer: trace.Tracer | None = None
        if exporter is not None:
            self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
            self.provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
            self._tracer = self.provider.get_tracer("fathom")

    @classmethod
    def from_settings(cls, settings: ObservabilitySettings) -> "Tracing":
        if settings.trace_exporter == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            return cls(ConsoleSpanExporter(service_name=settings.service_name), service_name=settings.service_name)
        if settings.trace_exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            return cls(OTLPSpanExporter(endpoint=settings.otlp_endpoint), service_name=settings.service_name)
        return cls()

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def start_request(self, name: str, headers: Mapping[str, str], attributes: dict[str, Any]) -> Span | None:
        """The request's root span (ended by the caller), continuing an incoming ``traceparent``."""
        if self._tracer is None:
            return None
        parent = _PROPAGATOR.extract(carrier=dict(headers))
        return self._tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)

    def child(self, parent: Span | None, name: str) -> AbstractContextManager[Any]:
        """A span under ``parent`` (passed explicitly: stages run in worker threads)."""
        if self._tracer is None or parent is None:
            return nullcontext()
        return self._tracer.start_as_current_span(name, context=trace.set_span_in_context(parent))

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()
