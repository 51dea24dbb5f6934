-- Traces: the W3C trace context current when the run was triggered (its `traceparent`, and
-- its `tracestate` on a second line when there was one), so the spans of every attempt of the
-- run, on any worker, join the trace of the code or the HTTP request that triggered it. NULL:
-- no trace context at trigger time.
ALTER TABLE runs ADD COLUMN trace_context TEXT;
