"""`tether worker`, `serve` and `dev`: an OTLP/HTTP trace exporter configured from the standard
`OTEL_*` environment variables, when they ask for one and the application installed no
TracerProvider of its own (the `otel` extra)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from tether.errors import ConfigurationError

log = logging.getLogger("tether.observe")

ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
SUPPORTED_PROTOCOLS = ("", "http/protobuf")


def wanted() -> bool:
    """Whether the environment asks for traces to be exported: OTEL_TRACES_EXPORTER=otlp, or
    an OTLP endpoint set (and OTEL_TRACES_EXPORTER not "none"; OTEL_SDK_DISABLED not true)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    if exporter and exporter != "otlp":
        raise ConfigurationError(f"OTEL_TRACES_EXPORTER={exporter!r} is not supported by "
                                 "tether's command line: use 'otlp' (OTLP over HTTP) or 'none', "
                                 "or install a TracerProvider in your app")
    return exporter == "otlp" or any(os.environ.get(name, "").strip() for name in ENDPOINTS)


def configure(service_name: str) -> Callable[[], None] | None:
    """Install a TracerProvider exporting spans over OTLP/HTTP when the environment asks for it
    and none is installed; returns its shutdown (flushes what is buffered), else None.
    `service_name`: the resource's service.name unless OTEL_SERVICE_NAME says otherwise."""
    if not wanted():
        return None
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                              os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")).strip()
    if protocol not in SUPPORTED_PROTOCOLS:
        raise ConfigurationError(f"OTLP protocol {protocol!r} is not supported: tether exports "
                                 "traces as http/protobuf (set OTEL_EXPORTER_OTLP_PROTOCOL="
                                 "http/protobuf, and the endpoint's HTTP port, usually 4318)")
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigurationError("OTEL_* variables ask for traces, but OpenTelemetry is not "
                                 "installed: pip install 'tether[otel]'") from None
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None  # the application's own provider is used as it is
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    endpoint = next((os.environ[n] for n in ENDPOINTS if os.environ.get(n)), "the default")
    log.info("exporting traces over OTLP/HTTP to %s", endpoint)
    return provider.shutdown
