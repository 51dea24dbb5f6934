"""`app.rate_limits`: named rate limits that any task's code shares, whatever its queue:
`app.rate_limits.set("openai", 500, "1m")`, then `ctx.step(..., rate_limit="openai")` or
`ctx.acquire("openai", weight=n)` take from it (engine/acquire.py). The limit is global: every
worker on every machine takes from the one bucket in the database."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tether.durations import Duration, seconds
from tether.errors import ConfigurationError, UnknownRateLimit
from tether.storage.rates import LimitRecord

if TYPE_CHECKING:
    from tether.app import Tether

_NAME = re.compile(r"^[A-Za-z0-9._:/@-]{1,128}$")


@dataclass(frozen=True)
class NamedLimit:
    """A named rate limit: at most `limit` units per `period` seconds, `burst` of them at once."""

    name: str
    limit: float
    period: float
    burst: float
    updated_at: float

    @property
    def per_second(self) -> float:
        """The steady rate, in units per second."""
        return self.limit / self.period


def check_name(name: Any) -> str:
    """A limit's name: 1-128 letters, digits or . _ : / @ - characters."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"a rate limit's name must be 1-128 letters, digits or . _ : / @ - characters; "
            f"got {name!r}")
    return name


def _positive(value: Any, what: str, least: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value < least or value <= 0:
        bound = f"at least {least:g}" if least > 0 else "more than 0"
        raise ConfigurationError(f"{what} must be a number {bound}; got {value!r}")
    return float(value)


def check_limit(name: Any, limit: Any, period: Any, burst: Any) -> tuple[str, float, float, float]:
    """The validated (name, limit, period in seconds, burst) of a named limit."""
    name = check_name(name)
    units = _positive(limit, f"rate limit {name!r}: limit (units per period)", 0)
    span = seconds(period, f"rate limit {name!r}: period")
    if not math.isfinite(span) or span <= 0:
        raise ConfigurationError(f"rate limit {name!r}: period must be more than 0 seconds; "
                                 f"got {period!r}")
    at_once = _positive(burst, f"rate limit {name!r}: burst (units at once)", 1)
    return name, units, span, at_once


def check_weight(weight: Any) -> float:
    """How many units one take asks for: a number more than 0."""
    if isinstance(weight, bool) or not isinstance(weight, int | float) \
            or not math.isfinite(weight) or weight <= 0:
        raise ConfigurationError(f"a rate limit's weight must be a number more than 0; "
                                 f"got {weight!r}")
    return float(weight)


def _view(record: LimitRecord) -> NamedLimit:
    return NamedLimit(record.name, record.limit, record.period, record.burst, record.updated_at)


class RateLimits:
    """`app.rate_limits`: set, get, list and delete named limits."""

    def __init__(self, app: Tether) -> None:
        self._app = app

    def set(self, name: str, limit: float, period: Duration, burst: float = 1) -> NamedLimit:
        """Create or change the limit `name`: at most `limit` units per `period` (seconds, a
        timedelta, or text such as "1s", "1m", "1h"), `burst` units at once (default 1: units
        are spaced evenly, `period / limit` apart). A take's `weight` can never be more than
        `burst`. Changing a limit keeps what was taken from it."""
        name, units, span, at_once = check_limit(name, limit, period, burst)
        record = LimitRecord(name, units, span, at_once, self._app.clock.now())
        self._app.storage.set_rate_limit(record)
        return _view(record)

    def get(self, name: str) -> NamedLimit:
        """The limit `name`; UnknownRateLimit when there is none."""
        record = self._app.storage.get_rate_limit(check_name(name))
        if record is None:
            raise UnknownRateLimit(name)
        return _view(record)

    def list(self) -> list[NamedLimit]:
        """Every named limit, by name."""
        return [_view(r) for r in self._app.storage.list_rate_limits()]

    def delete(self, name: str) -> bool:
        """Delete the limit `name`; False when there was none. Code that still takes from it
        then fails with UnknownRateLimit."""
        return self._app.storage.delete_rate_limit(check_name(name))
