"""Tracing tests: an SDK TracerProvider with an in-memory exporter installed as the process's
global provider for one test, and the global reset afterwards (so tests elsewhere run with
tracing off, the default)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from trace_tree import reset_tracer_provider


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    reset_tracer_provider()
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    trace.set_tracer_provider(provider)
    yield exported
    provider.shutdown()
    reset_tracer_provider()
