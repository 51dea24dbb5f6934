"""Durations and points in time given as seconds, `timedelta`, `datetime` or text like "5m"."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from tether.errors import ConfigurationError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_COMPOUND = re.compile(r"^\s*(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+\s*$")  # "1h30m", as Trigger.dev writes

Duration = float | int | timedelta | str


def seconds(value: Duration, what: str = "duration") -> float:
    """Seconds from a number, a timedelta, or text such as "30s", "5m", "1.5h", "7d", "1h30m"."""
    if isinstance(value, timedelta):
        result = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        result = float(value)
    elif isinstance(value, str) and (match := _TEXT.match(value)):
        result = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    elif isinstance(value, str) and _COMPOUND.match(value):
        result = sum(float(amount) * _UNITS[unit] for amount, unit in _PART.findall(value))
    else:
        raise ConfigurationError(
            f"{what} must be seconds, a timedelta or text like '30s', '5m', '2h', '7d'; got {value!r}"
        )
    if result < 0:
        raise ConfigurationError(f"{what} must not be negative, got {value!r}")
    return result


def until(value: Duration | datetime, now: float, what: str = "delay") -> float:
    """An absolute time (epoch seconds): `now` plus a duration, or a datetime as given."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigurationError(f"{what} datetime must be timezone-aware, got {value!r}")
        return value.timestamp()
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.timestamp()
    return now + seconds(value, what)


def duration_text(amount: float) -> str:
    """Seconds as the shortest of "1d", "2h", "10m", "90s", "1500ms" (what `seconds` reads back)."""
    whole = round(amount)
    if abs(amount - whole) > 1e-6:
        return f"{round(amount * 1000)}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"
