"""OpenTelemetry traces over OTLP/HTTP, only when ``LOVEDCRM_OTLP_ENDPOINT`` is set (nothing is
started or sent otherwise). ``core.metrics.MetricsMiddleware`` opens one server
span per request, named by method and route template."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from lovedcrm.config import Settings


def tracer_provider(
    settings: Settings, exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """A tracer provider exporting to the configured endpoint (or to ``exporter``, for
    tests); None when tracing is off."""
    if exporter is None and not settings.otlp_endpoint:
        return None

    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.otlp_service_name})
    )
    provider.add_span_processor(
        BatchSpanProcessor(exporter or OTLPSpanExporter(endpoint=settings.otlp_endpoint))
    )
    return provider
