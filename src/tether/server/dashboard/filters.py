"""Jinja filters: relative times, durations, JSON, status colours."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment
from markupsafe import Markup, escape

NONE = "\u2013"  # an en dash: no value
TIMES = "\u00d7"  # the multiplication sign


def epoch(value: datetime | float | None) -> float | None:
    if value is None:
        return None
    return value.timestamp() if isinstance(value, datetime) else float(value)


def duration(seconds: float | None) -> str:
    """120 ms, 1.24 s, 3m 12s, 2h 05m, 3d 4h."""
    if seconds is None:
        return NONE
    s = max(0.0, seconds)
    if s < 0.00001:
        return "0 ms"
    if s < 1:
        return f"{s * 1000:.0f} ms" if s >= 0.001 else f"{s * 1000:.2f} ms"
    if s < 60:
        return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"
    minutes, sec = divmod(int(s), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def relative(ts: float, now: float | None = None) -> str:
    """"12s ago", "in 5m", "1h 20m ago", "3d 4h ago"."""
    delta = (now if now is not None else time.time()) - ts
    d = int(abs(delta))
    if d < 1:
        return "just now" if delta >= 0 else "now"
    if d < 3600:
        text = f"{d // 60}m" if d >= 60 else f"{d}s"
    elif d < 86400:
        text = f"{d // 3600}h" + (f" {d % 3600 // 60}m" if d % 3600 >= 60 else "")
    else:
        text = f"{d // 86400}d" + (f" {d % 86400 // 3600}h" if d % 86400 >= 3600 else "")
    return f"in {text}" if delta < 0 else f"{text} ago"


def absolute(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def reltime(value: datetime | float | None) -> Markup:
    """A <time> the page's script keeps relative ("12s ago"), with the exact time on hover."""
    ts = epoch(value)
    if ts is None:
        return Markup('<span class="muted">{}</span>').format(NONE)
    iso = datetime.fromtimestamp(ts, tz=UTC).isoformat()
    return Markup('<time datetime="{}" data-rel="{:.3f}" title="{}">{}</time>').format(
        iso, ts, absolute(ts), relative(ts))


def span(start: datetime | float | None, end: datetime | float | None) -> Markup:
    """How long from `start` to `end`; without an end, a counter the page's script advances."""
    a, b = epoch(start), epoch(end)
    if a is None:
        return Markup('<span class="muted">{}</span>').format(NONE)
    if b is None:
        return Markup('<span class="running" data-since="{:.3f}">{}</span>').format(
            a, duration(time.time() - a))
    return Markup("{}").format(duration(b - a))


def short_seconds(seconds: float) -> str:
    """400ms, 1s, 1.5s, 2m, 1h."""
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if seconds >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds * 1000:.3g}ms"


def retry_summary(retry: dict[str, Any]) -> str:
    """"5 attempts · backoff 1s → 1m x2, jitter" (with a multiplication sign) or "no retries"."""
    attempts = int(retry.get("max_attempts", 1))
    if attempts <= 1:
        return "no retries"
    low, high = float(retry.get("min_delay", 0)), float(retry.get("max_delay", 0))
    backoff = short_seconds(low) if low == high else f"{short_seconds(low)} → {short_seconds(high)}"
    factor = float(retry.get("factor", 1))
    shape = f" {TIMES}{factor:g}" if factor != 1 and low != high else ""
    return f"{attempts} attempts · backoff {backoff}{shape}{', jitter' if retry.get('jitter') else ''}"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=False)


def compact(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_class(status: Any) -> str:
    return "st-" + str(getattr(status, "value", status) or "none").lower().replace("_", "-")


def badge(status: Any) -> Markup:
    text = str(getattr(status, "value", status))
    return Markup('<span class="badge {}">{}</span>').format(status_class(text),
                                                             text.replace("_", " "))


def short_id(value: str | None, keep: int = 10) -> str:
    """The id's prefix and last characters: run_…hjr6x2."""
    if not value:
        return ""
    prefix, _, rest = value.partition("_")
    return f"{prefix}_…{rest[-keep:]}" if rest and len(rest) > keep else value


def highlight_json(value: Any) -> Markup:
    """Pretty JSON with keys, strings and numbers wrapped in spans for colour."""
    return Markup(_colour(pretty(value)))


def _colour(text: str) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            j = _string_end(text, i)
            token = text[i:j]
            is_key = text[j:j + 1] == ":"
            out.append(f'<span class="{"j-key" if is_key else "j-str"}">{escape(token)}</span>')
            i = j
        elif ch in "-0123456789":
            j = i + 1
            while j < n and text[j] in "0123456789.eE+-":
                j += 1
            out.append(f'<span class="j-num">{text[i:j]}</span>')
            i = j
        elif text.startswith(("true", "false", "null"), i):
            word = next(w for w in ("true", "false", "null") if text.startswith(w, i))
            out.append(f'<span class="j-lit">{word}</span>')
            i += len(word)
        else:
            out.append(str(escape(ch)))
            i += 1
    return "".join(out)


def _string_end(text: str, start: int) -> int:
    j = start + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text[j] == '"':
            return j + 1
        j += 1
    return len(text)


def install(env: Environment) -> None:
    env.filters.update(duration=duration, reltime=reltime, span=span, pretty=pretty,
                       compact=compact, status_class=status_class, badge=badge, short_id=short_id,
                       json=highlight_json, absolute=absolute,
                       retry_summary=retry_summary)
