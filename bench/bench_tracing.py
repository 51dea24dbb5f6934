"""`--tracing` for the benchmarks: an OpenTelemetry SDK TracerProvider with a BatchSpanProcessor
and an exporter that drops what it gets, in the benchmark's process (its triggers) and in the
workers it starts (BENCH_TRACING=1, read by bench/app.py), so tracing on and off can be
measured alternately. Needs the otel extra."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

ENV = "BENCH_TRACING"


def add_tracing_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracing", action="store_true",
                        help="trace with an SDK provider (batching, spans dropped on export)")


def from_args(args: argparse.Namespace) -> bool:
    """Turn tracing on for this process and the workers it starts, when asked."""
    if args.tracing:
        os.environ[ENV] = "1"
        install()
    return bool(args.tracing)


def install() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Dropped(SpanExporter):
        def __init__(self) -> None:
            self.spans = 0

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            self.spans += len(spans)
            return SpanExportResult.SUCCESS

        def shutdown(self, *args: Any) -> None:
            pass

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropped()))
    trace.set_tracer_provider(provider)
