"""An app that installs its own TracerProvider on import, exporting to a file beside it: the
`tether worker` that runs it must use that provider, and install none from the OTEL_* variables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from tether import Context, Tether

SPANS = Path(__file__).parent / "own-spans.txt"


class ToFile(SpanExporter):
    """One line per span: its name."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with SPANS.open("a") as out:
            out.writelines(f"{span.name}\n" for span in spans)
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(ToFile()))
trace.set_tracer_provider(provider)

app = Tether()


@app.task(id="hello")
async def hello(payload: Any, ctx: Context) -> str:
    return str(await ctx.step("greet", lambda: f"hello {payload}"))
