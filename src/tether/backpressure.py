"""Back-pressure from the services a task calls: `RetryAfter`, and the HTTP errors of httpx and
requests whose response says 429 or 503 with a `Retry-After` header (for tasks that opt in with
`@app.task(respect_retry_after=True)`).

Neither HTTP library is imported: an error is recognized by its shape (`exc.response` with a
`status_code` and `headers`), which both libraries' errors have. What the header says is bounded
to a day, as `RetryAfter` is; a header that cannot be read is not back-pressure (the error is
an ordinary failure, retried by the task's policy).
"""

from __future__ import annotations

import math
import re
from email.utils import parsedate_to_datetime
from typing import Any

from tether.errors import MAX_RETRY_AFTER, RetryAfter

MAX_DEFERRALS = 10  # RetryAfters in a row on one attempt; the next one counts a failed attempt
STATUSES = frozenset({429, 503})  # the responses whose Retry-After is honored
_SECONDS = re.compile(r"^\s*(\d+)(?:\.\d+)?\s*$", re.ASCII)


def parse_retry_after(value: str, now: float) -> float | None:
    """Seconds to wait from a Retry-After header at `now` (epoch seconds): delay-seconds (a
    whole number; a fraction is tolerated) or an HTTP date. A date in the past is 0; anything
    longer than a day is a day. None: the value is neither."""
    if not isinstance(value, str):
        return None
    match = _SECONDS.match(value)
    if match is not None:
        return min(float(match.group(1)), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:  # (an HTTP date is always GMT; none given: unusable)
        return None
    try:
        delay = when.timestamp() - now
    except (OverflowError, OSError, ValueError):
        return None
    if not math.isfinite(delay):
        return None
    return min(max(delay, 0.0), MAX_RETRY_AFTER)


def _header(headers: Any, name: str) -> str | None:
    """A header's value from a headers mapping (case-insensitive in both libraries; a plain
    dict is looked through by hand)."""
    try:
        found = headers.get(name)
        if found is None and isinstance(headers, dict):
            found = next((v for k, v in headers.items()
                          if isinstance(k, str) and k.lower() == name.lower()), None)
    except Exception:
        return None
    return found if isinstance(found, str) else None


def http_retry_after(exc: BaseException, now: float) -> float | None:
    """Seconds to wait when `exc` is an HTTP error (httpx.HTTPStatusError, requests.HTTPError or
    alike) for a 429 or 503 response with a readable Retry-After header; None otherwise."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    status = getattr(response, "status_code", None)
    if not isinstance(status, int) or status not in STATUSES:
        return None
    value = _header(getattr(response, "headers", None), "Retry-After")
    return None if value is None else parse_retry_after(value, now)


def back_pressure(exc: BaseException, respect_http: bool,
                  now: float) -> tuple[float, str] | None:
    """(seconds, reason) when `exc` asks the run to come back later: a RetryAfter, or (with
    `respect_http`) an HTTP 429/503 error with Retry-After, or a group of errors that are all
    back-pressure (the longest wait). None: an ordinary failure."""
    if isinstance(exc, RetryAfter):
        return exc.seconds, str(exc)
    if isinstance(exc, BaseExceptionGroup):  # e.g. calls made together in an asyncio.TaskGroup
        found = [back_pressure(inner, respect_http, now) for inner in exc.exceptions]
        if not found or any(f is None for f in found):
            return None  # another error is among them: an ordinary failure
        return max((f for f in found if f is not None), key=lambda f: f[0])
    if not respect_http:
        return None
    delay = http_retry_after(exc, now)
    if delay is None:
        return None
    status = exc.response.status_code  # type: ignore[attr-defined]
    return delay, f"HTTP {status} with Retry-After: {delay:g}s ({type(exc).__name__})"
