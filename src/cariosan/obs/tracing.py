"""OpenTelemetry traces for HTTP and SQL, exported over OTLP when the standard variables say so."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from cariosan import __version__

_instrumented_sql = False


def build_tracer_provider(
    otel: Mapping[str, str], exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """A provider exporting to `exporter`, or to OTLP/HTTP when OTEL_EXPORTER_OTLP_* is set;
    None when tracing is off."""
    if otel.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    if exporter is None:
        endpoint = otel.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        base = otel.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if not endpoint and not base:
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        if not endpoint and base:
            endpoint = base.rstrip("/") + "/v1/traces"
        exporter = OTLPSpanExporter(endpoint=endpoint)
    service = otel.get("OTEL_SERVICE_NAME", "cariosan")
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "service.version": __version__})
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    instrument_sql(provider)
    return provider


def instrument_sql(provider: TracerProvider) -> None:
    """Wrap asyncpg so every query is a span. asyncpg is patched process-wide, once."""
    global _instrumented_sql
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    if _instrumented_sql:
        AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    _instrumented_sql = True
