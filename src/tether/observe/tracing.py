"""OpenTelemetry traces of runs (the `otel` extra; docs/observability.md draws the tree).

Tracing is on when the application installed a TracerProvider (`tether worker`, `serve` and
`dev` install one from the `OTEL_*` environment: observe/otlp.py); Tether installs none of its
own. It is checked where a trigger or an execution segment starts (the app may set its provider
after creating Tether); off, or without OpenTelemetry, a trigger and an attempt pay one check
and a step nothing but an attribute test.

The spans: `trigger <task>` (PRODUCER) where a run is triggered, its context stored with the run
(`runs.trace_context`: the W3C traceparent, and the tracestate on a second line); one
`run <task>` span (CONSUMER) per execution segment (a claim until the run parks or its attempt
ends), a child of that stored context, so retries and resumed runs stay in the caller's trace;
inside it `step <name>` / `once <name>` for each call whose function ran (replayed calls have
none), `trigger <task>` for each child trigger (the child run's stored context), and one span per
wait once it is over (`sleep <name>`, `wait_for_token:<id>`, `trigger_and_wait:<task>`, ...): a
child of the segment that saw it end, or of the run's stored context when it began in an earlier
segment (it then lies between the segments it separates).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

# OpenTelemetry, imported once something in the process imported it: before that nobody can
# have installed a TracerProvider (but through OTEL_PYTHON_TRACER_PROVIDER), so tracing is off
# and `import tether` does not pay for it; without the otel extra it stays off
otel_context: Any = None
trace: Any = None


def _load() -> bool:
    global otel_context, trace
    if "opentelemetry.trace" not in sys.modules and "OTEL_PYTHON_TRACER_PROVIDER" not in os.environ:
        return False
    try:
        from opentelemetry import context
        from opentelemetry import trace as api
    except ImportError:
        return False
    otel_context, trace = context, api
    return True


if TYPE_CHECKING:
    from opentelemetry.context import Context as OtelContext
    from opentelemetry.trace import Span, Tracer

    from tether.engine.states import Transition
    from tether.storage.records import Lease, NewRun, RunRecord

SYSTEM = "tether"  # messaging.system
Stored = TypeVar("Stored", bound=Sequence[tuple[Any, ...]])
STEP_MIN_ENV = "TETHER_TRACE_STEP_MIN_MS"


def _step_min() -> float:
    """Seconds a step's function must take for the step to get a span of its own (default
    1 ms): a span costs tens of microseconds, many times a trivial step; quicker steps are
    counted on their segment's span (`tether.quick_steps`). 0: every step."""
    text = os.environ.get(STEP_MIN_ENV, "").strip()
    try:
        return max(0.0, float(text) / 1000) if text else 0.001
    except ValueError:
        return 0.001


STEP_MIN = _step_min()
MAX_TRACESTATE = 512  # characters of an incoming tracestate kept (W3C: 32 members)
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_TRACESTATE = re.compile(r"[\x20-\x7e]*")

_cache: tuple[object, Any] = (None, None)  # (provider, its tracer)
_logs_lock = threading.Lock()
_logs_installed = False


def tracer() -> Tracer | None:
    """The tracer of the application's TracerProvider; None when tracing is off (no provider
    installed, a no-op one, or no OpenTelemetry)."""
    global _cache
    if trace is None and not _load():
        return None
    provider = trace.get_tracer_provider()
    if provider is _cache[0]:
        return _cache[1]  # type: ignore[no-any-return]
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    found: Tracer = provider.get_tracer("tether")
    _cache = (provider, found)
    _install_log_ids()
    return found


def _nanos(seconds: float) -> int:
    return int(seconds * 1e9)


# -- the stored context -----------------------------------------------------------------------
def incoming(traceparent: str | None, tracestate: str | None) -> str | None:
    """The context to store from an HTTP request's `traceparent` and `tracestate` headers; None
    when there is no valid traceparent (W3C: an invalid one is ignored)."""
    if traceparent is None:
        return None
    value = traceparent.strip().lower()
    if (len(value) != 55 or not _TRACEPARENT.fullmatch(value) or value.startswith("ff")
            or value[3:35] == "0" * 32 or value[36:52] == "0" * 16):
        return None
    state = (tracestate or "").strip()
    if state and len(state) <= MAX_TRACESTATE and _TRACESTATE.fullmatch(state):
        return f"{value}\n{state}"
    return value


def _encode(span: Span) -> str:
    """A span's context as stored: its traceparent, and its tracestate on a second line."""
    found = span.get_span_context()
    parent = f"00-{found.trace_id:032x}-{found.span_id:016x}-{found.trace_flags:02x}"
    state = found.trace_state.to_header() if found.trace_state else ""
    return f"{parent}\n{state}" if state else parent


def decode(stored: str | None) -> OtelContext | None:
    """The OpenTelemetry context a stored trace context stands for (None: none stored or not
    valid). Parsed here, without a propagator: this is on every execution segment's path."""
    if not stored or (trace is None and not _load()):
        return None
    parent, _, state = stored.partition("\n")
    try:
        trace_id, span_id = int(parent[3:35], 16), int(parent[36:52], 16)
        flags = int(parent[53:55], 16)
    except ValueError:
        return None
    if len(parent) != 55 or not trace_id or not span_id:
        return None
    span_context = trace.SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(flags & 1),
        trace_state=trace.TraceState.from_header([state]) if state else None)
    context: OtelContext = trace.set_span_in_context(trace.NonRecordingSpan(span_context))
    return context


def run_root(run_id: str) -> OtelContext:
    """The parent of a run's segments when it was triggered without a trace context: a span
    context derived from the run's id (never exported), so every segment of the run, on any
    worker, is in one trace all the same."""
    digest = hashlib.sha256(run_id.encode()).digest()
    span_context = trace.SpanContext(int.from_bytes(digest[:16]), int.from_bytes(digest[16:24]),
                                     is_remote=True,
                                     trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))
    root: OtelContext = trace.set_span_in_context(trace.NonRecordingSpan(span_context))
    return root


# -- triggers ---------------------------------------------------------------------------------
def start_trigger(task_id: str, queue: str, runs: list[NewRun],
                  incoming_context: str | None = None,
                  parent: OtelContext | None = None) -> Span | None:
    """Before new runs are stored: a `trigger <task>` span (tracing on), child of the current
    span, else of `parent` or the incoming request's context, whose context the runs store;
    None when off (then the runs store the incoming context as it came, if any). End it with
    `end_trigger`."""
    found = tracer()
    if found is None:
        if incoming_context is not None:
            for new in runs:
                new.trace_context = incoming_context
        return None
    if parent is None and not trace.get_current_span().get_span_context().is_valid:
        parent = decode(incoming_context)
    # (few attributes: each costs microseconds, on every trigger)
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM, "messaging.operation.type": "send",
        "messaging.destination.name": queue, "tether.task": task_id, "tether.queue": queue}
    if len(runs) == 1:
        attributes["tether.run_id"] = runs[0].id
    else:
        attributes["messaging.batch.message_count"] = len(runs)
    span = found.start_span(f"trigger {task_id}", context=parent, kind=trace.SpanKind.PRODUCER,
                            attributes=attributes)
    stored = _encode(span)
    for new in runs:
        new.trace_context = stored
    return span


def end_trigger(span: Span, created: Sequence[tuple[Any, ...]] | None,
                error: BaseException | None = None) -> None:
    """End a trigger span: the run it stored (or the run an idempotency key returned). Each
    item of `created` ends with (RunRecord, is_new)."""
    if error is not None:
        span.record_exception(error)
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    elif created is not None and len(created) == 1:
        record, is_new = created[0][-2:]
        span.set_attribute("tether.run_id", record.id)
        span.set_attribute("tether.cached", not is_new)
    span.end()


def stored(span: Span | None, store: Callable[[], Stored]) -> Stored:
    """`store()` (which stores the runs `span` triggers) and the span ended with its outcome;
    with no span (tracing off) only `store()`."""
    if span is None:
        return store()
    try:
        created = store()
    except BaseException as exc:
        end_trigger(span, None, exc)
        raise
    end_trigger(span, created)
    return created


# -- execution segments -----------------------------------------------------------------------
class RunTrace:
    """The spans of one execution segment of a run: its `run <task>` span, current while the
    task's code runs, and the spans of the durable calls made in it."""

    def __init__(self, found: Tracer, record: RunRecord, lease: Lease, resumed: bool,
                 started: float) -> None:
        self.tracer = found
        self.parent = decode(record.trace_context) or run_root(record.id)
        self.span = found.start_span(
            f"run {record.task_id}", context=self.parent, kind=trace.SpanKind.CONSUMER,
            start_time=_nanos(started), attributes={
                "messaging.system": SYSTEM, "messaging.operation.type": "process",
                "messaging.destination.name": record.queue, "tether.run_id": record.id,
                "tether.task": record.task_id, "tether.queue": record.queue,
                "tether.attempt": lease.attempt})
        if resumed:
            self.span.set_attribute("tether.resumed", True)
        self.context = trace.set_span_in_context(self.span, self.parent)
        self._token: object | None = None
        self.quick_steps = 0  # steps too quick for a span of their own

    def enter(self) -> None:
        """Make the segment's span current (in this task's context: the task's code, the spans
        the application makes there and its log records see it)."""
        self._token = otel_context.attach(self.context)

    def end(self, transition: Transition | None) -> None:
        span = self.span
        if self.quick_steps:
            span.set_attribute("tether.quick_steps", self.quick_steps)
        if transition is None:
            span.set_attribute("tether.outcome", "STOPPED")
        else:
            span.set_attribute("tether.outcome", str(transition.to))
            if transition.attempt_outcome not in (None, "COMPLETED", "SUSPENDED", "DEFERRED"):
                span.set_status(trace.Status(trace.StatusCode.ERROR, transition.reason))
            elif str(transition.to) == "WAITING":
                span.add_event("parked", {"tether.reason": transition.reason})
            elif transition.attempt_outcome == "DEFERRED":  # back-pressure: not an error
                span.add_event("deferred", {"tether.reason": transition.reason})
        span.end()
        if self._token is not None:
            otel_context.detach(self._token)
            self._token = None

    def call(self, kind: str, key: str, started: float, ended: float, tries: int = 1,
             error: BaseException | None = None) -> None:
        """A step or once whose function ran in this segment: a span made after the fact,
        without attributes but the tries of a call retried in place; none for a step that
        succeeded at once in less than STEP_MIN (counted instead)."""
        if ended - started < STEP_MIN and error is None and tries == 1 and kind == "step":
            self.quick_steps += 1
            return
        span = self.tracer.start_span(f"{kind} {key}", context=self.context,
                                      start_time=_nanos(started))
        if tries > 1:
            span.set_attribute("tether.tries", tries)
        if error is not None:
            span.record_exception(error)
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end(end_time=_nanos(ended))

    def wait(self, name: str, kind: str, started: float, ended: float, earlier: bool,
             error: str | None = None) -> None:
        """A wait that is over: begun in this segment (a child of its span) or, `earlier`, in
        an earlier one (a child of the run's stored context, between the segments)."""
        parent = self.parent if earlier else self.context
        span = self.tracer.start_span(name, context=parent, start_time=_nanos(started),
                                      attributes={"tether.kind": kind, "tether.wait": name})
        if error is not None:
            span.set_status(trace.Status(trace.StatusCode.ERROR, error))
        span.end(end_time=_nanos(ended))

    def encoded(self) -> str:
        """The segment span's context as stored (what a child process gives the runs it
        triggers, so that they join this trace: isolation/messages.py)."""
        return _encode(self.span)

    def child_trigger(self, task_id: str, queue: str, runs: list[NewRun]) -> Span | None:
        """The `trigger <task>` span of child runs, a child of this segment's span."""
        return start_trigger(task_id, queue, runs, parent=self.context)


def start_segment(record: RunRecord, lease: Lease, resumed: bool, now: float) -> RunTrace | None:
    """The trace of an execution segment starting now; None when tracing is off."""
    found = tracer()
    if found is None:
        return None
    return RunTrace(found, record, lease, resumed, now)


def job_context(stored: str) -> Callable[[], None] | None:
    """In the child process of an isolated attempt (isolation/child.py): make the attempt's
    span in the worker (`stored`, as RunTrace.encoded gives it) the current span while the
    task's code runs, so that its log records carry the attempt's ids as they would in the
    worker, and what it sends (an instrumented HTTP client) joins the trace. Returns the undo;
    None without OpenTelemetry."""
    if trace is None:
        try:
            import opentelemetry.trace  # noqa: F401 (the worker traces: so does its child)
        except ImportError:
            return None
    parent = decode(stored)
    if parent is None:
        return None
    _install_log_ids()
    token = otel_context.attach(parent)
    return lambda: otel_context.detach(token)


# -- log records ------------------------------------------------------------------------------
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # the commands' log lines


class TraceIdsFormatter(logging.Formatter):
    """A formatter whose format may name `%(otelIds)s`: " trace=<trace id> span=<span id>" for a
    record emitted inside a span (tracing on), nothing otherwise. The commands' log lines use it
    once tracing is on (cli/common.py), and an isolated attempt's child process always."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        span = getattr(record, "otelSpanID", "0")
        record.otelIds = "" if span == "0" else \
            f" trace={getattr(record, 'otelTraceID', '0')} span={span}"
        return super().formatMessage(record)


def log_lines_name_ids(plain: str = LOG_FORMAT) -> None:
    """`tether worker`, `serve` and `dev`, once tracing is on in the process (the app's
    TracerProvider, or one set from OTEL_*: otlp.py): the root handlers that format with the
    command's `plain` format ("... %(name)s: %(message)s") name the trace and span of a record
    emitted inside one (`tether.worker trace=... span=...: ...`)."""
    if tracer() is None:
        return
    traced = plain.replace("%(name)s:", "%(name)s%(otelIds)s:")
    for handler in logging.getLogger().handlers:
        if handler.formatter is not None and handler.formatter._fmt == plain:
            handler.setFormatter(TraceIdsFormatter(traced))


def _install_log_ids() -> None:
    """Once tracing is on: every log record carries `otelTraceID`, `otelSpanID` and
    `otelTraceSampled` of the span current where it was emitted ("0" outside any span), as
    OpenTelemetry's logging instrumentation names them, for formats and handlers to use."""
    global _logs_installed
    with _logs_lock:
        if _logs_installed:
            return
        _logs_installed = True
        make = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make(*args, **kwargs)
            span_context = trace.get_current_span().get_span_context()
            if span_context.is_valid:
                record.otelTraceID = format(span_context.trace_id, "032x")
                record.otelSpanID = format(span_context.span_id, "016x")
                record.otelTraceSampled = span_context.trace_flags.sampled
            else:
                record.otelTraceID, record.otelSpanID, record.otelTraceSampled = "0", "0", False
            return record

        logging.setLogRecordFactory(factory)
