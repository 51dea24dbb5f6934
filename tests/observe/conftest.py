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

from tether.observe import tracing


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Spans exported in this process; every step gets a span (STEP_MIN 0: the steps of these
    tests are quick)."""
    monkeypatch.setattr(tracing, "STEP_MIN", 0.0)
    reset_tracer_provider()
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    trace.set_tracer_provider(provider)
    yield exported
    provider.shutdown()
    reset_tracer_provider()
