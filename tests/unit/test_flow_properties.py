"""Property tests for what back-pressure and named limits read from users and services: the
Retry-After header (delay-seconds and HTTP dates), a limit's values, and the GCRA arithmetic
(never more than `burst` at once nor more than the rate allows, whatever the takes)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tether.backpressure import back_pressure, http_retry_after, parse_retry_after
from tether.errors import MAX_RETRY_AFTER, ConfigurationError, RetryAfter
from tether.rate_limits import check_limit, check_weight
from tether.storage.rates import LimitRecord, take

NOW = 1_700_000_000.0


@given(st.integers(min_value=0, max_value=10**400), st.sampled_from(["", " ", "\t"]))
def test_delay_seconds_are_read_and_bounded_to_a_day(value: int, pad: str) -> None:
    assert parse_retry_after(f"{pad}{value}{pad}", NOW) == min(value, MAX_RETRY_AFTER)


@given(st.integers(min_value=-10**6, max_value=10**6))
def test_http_dates_are_read_relative_to_now(offset: int) -> None:
    when = datetime.fromtimestamp(NOW + offset, UTC)
    parsed = parse_retry_after(format_datetime(when, usegmt=True), NOW)
    assert parsed == min(max(offset, 0), MAX_RETRY_AFTER)


@given(st.text(max_size=40))
def test_any_header_text_is_read_or_refused_never_raises(text: str) -> None:
    parsed = parse_retry_after(text, NOW)
    assert parsed is None or 0 <= parsed <= MAX_RETRY_AFTER


@pytest.mark.parametrize("text", ["-5", "1e3", "soon", "", "Wed, 99 Foo 2026 00:00:00 GMT",
                                  "12 seconds", "0x10", "Fri, 31 Dec 1999 23:59:59"])
def test_unreadable_headers_are_none(text: str) -> None:
    assert parse_retry_after(text, NOW) is None


class _Response:
    def __init__(self, status: Any, headers: Any) -> None:
        self.status_code, self.headers = status, headers


class _Error(Exception):
    def __init__(self, response: Any) -> None:
        super().__init__("http")
        self.response = response


@given(st.one_of(st.integers(100, 599), st.none(), st.text(max_size=3)),
       st.one_of(st.none(), st.dictionaries(st.sampled_from(["Retry-After", "retry-after", "X"]),
                                            st.text(max_size=12), max_size=3)))
def test_only_429_and_503_with_a_readable_header_are_back_pressure(status: Any,
                                                                    headers: Any) -> None:
    found = http_retry_after(_Error(_Response(status, headers)), NOW)
    if found is not None:
        assert status in (429, 503) and 0 <= found <= MAX_RETRY_AFTER
    assert back_pressure(_Error(_Response(status, headers)), False, NOW) is None


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_retry_after_takes_exactly_the_seconds_of_a_day(value: float) -> None:
    if math.isfinite(value) and 0 <= value <= MAX_RETRY_AFTER:
        assert RetryAfter(value).seconds == value
        assert RetryAfter(timedelta(seconds=value)).seconds == pytest.approx(value, abs=1e-6)
    else:
        with pytest.raises(ConfigurationError):
            RetryAfter(value)


numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**9),
                    st.booleans(), st.text(max_size=4), st.none())


@given(numbers, numbers, numbers)
def test_limit_values_are_accepted_only_when_they_make_sense(limit: Any, period: Any,
                                                             burst: Any) -> None:
    def fine(value: Any, least: float) -> bool:
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value) and value > 0 and value >= least)

    period_fine = fine(period, 0) or (isinstance(period, str) and period.strip() != "" and (
        _seconds_or_none(period) or 0) > 0)
    expected = fine(limit, 0) and period_fine and fine(burst, 1)
    try:
        name, units, span, at_once = check_limit("x", limit, period, burst)
    except ConfigurationError:
        assert not expected
    else:
        assert expected and name == "x" and units > 0 and span > 0 and at_once >= 1


def _seconds_or_none(text: str) -> float | None:
    from tether.durations import seconds
    try:
        return seconds(text)
    except ConfigurationError:
        return None


@given(numbers)
def test_weights_are_positive_numbers(weight: Any) -> None:
    ok = (isinstance(weight, int | float) and not isinstance(weight, bool)
          and math.isfinite(weight) and weight > 0)
    if ok:
        assert check_weight(weight) == weight
    else:
        with pytest.raises(ConfigurationError):
            check_weight(weight)


@settings(max_examples=300)
@given(st.integers(1, 50), st.floats(0.1, 100), st.integers(1, 10),
       st.lists(st.tuples(st.floats(0, 5), st.integers(1, 10), st.floats(0, 3)),
                min_size=1, max_size=60))
def test_gcra_never_lets_more_through_than_the_limit_and_burst(
        limit: int, period: float, burst: int,
        takes: list[tuple[float, int, float]]) -> None:
    """Takes at times that move forward, of any weight up to the burst, with any wait allowed:
    the units granted, at the moments granted, never exceed `burst` plus the steady rate over
    any span of time."""
    record = LimitRecord("x", limit, period, burst, 0.0)
    interval = period / limit
    now, tat = 0.0, None
    granted: list[tuple[float, int]] = []
    for step, weight, max_wait in takes:
        now += step
        weight = min(weight, burst)
        result = take(record, tat, weight, now, max_wait)
        if result.granted:
            assert now <= result.at <= now + max_wait + 1e-6
            tat = result.tat
            granted.append((result.at, weight))
        else:
            assert result.at > now + max_wait
    assume(granted)
    for i, (start, _) in enumerate(granted):
        for end, _ in granted[i:]:
            units = sum(w for at, w in granted if start <= at <= end)
            assert units <= burst + (end - start) / interval + 1e-6


@given(st.text(max_size=140))
def test_limit_names_are_short_plain_text(name: str) -> None:
    import re

    from tether.rate_limits import check_name

    plain = re.fullmatch(r"[A-Za-z0-9._:/@-]{1,128}", name) is not None
    if plain:
        assert check_name(name) == name
    else:
        with pytest.raises(ConfigurationError, match="name must be"):
            check_name(name)


def test_a_group_is_back_pressure_only_when_every_error_in_it_is() -> None:
    told = ExceptionGroup("calls", [RetryAfter(5), _Error(_Response(429, {"Retry-After": "9"}))])
    assert back_pressure(told, True, NOW) == (9.0, "HTTP 429 with Retry-After: 9s (_Error)")
    assert back_pressure(told, False, NOW) is None  # the 429 alone is not, without the opt-in
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [RetryAfter(3)]), RetryAfter(1)])
    assert back_pressure(nested, False, NOW) == (3.0, "retry after 3s")
    mixed = ExceptionGroup("calls", [RetryAfter(5), ValueError("bad")])
    assert back_pressure(mixed, True, NOW) is None
