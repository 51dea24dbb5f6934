"""Durations and points in time from numbers, timedeltas, datetimes and text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tether.durations import duration_text, seconds, until
from tether.errors import ConfigurationError


@pytest.mark.parametrize(("text", "expected"), [
    ("30s", 30.0), ("5m", 300.0), ("2h", 7200.0), ("7d", 604800.0), ("1w", 604800.0),
    ("1.5h", 5400.0), ("250ms", 0.25), ("10", 10.0), (" 3 m ", 180.0), ("0s", 0.0),
])
def test_text(text: str, expected: float) -> None:
    assert seconds(text) == pytest.approx(expected)


@pytest.mark.parametrize(("value", "expected"), [
    (5, 5.0), (2.5, 2.5), (timedelta(minutes=2), 120.0), (timedelta(days=1, seconds=1), 86401.0),
])
def test_numbers_and_timedeltas(value: object, expected: float) -> None:
    assert seconds(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["5x", "abc", "", "m", "-5s", "5 minutes", "1e3", None, True, [1]])
def test_bad_input_is_a_configuration_error(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="delay"):
        seconds(bad, "delay")  # type: ignore[arg-type]


@pytest.mark.parametrize("negative", [-1, -0.5, timedelta(seconds=-3)])
def test_negative_is_rejected(negative: object) -> None:
    with pytest.raises(ConfigurationError, match="must not be negative"):
        seconds(negative)  # type: ignore[arg-type]


def test_until_adds_a_duration_to_now() -> None:
    assert until("5m", 1000.0) == 1300.0
    assert until(timedelta(seconds=7), 1000.0) == 1007.0
    assert until(3, 1000.0) == 1003.0


def test_until_takes_an_aware_datetime_as_given() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert until(when, 1000.0) == when.timestamp()
    plus2 = datetime(2030, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert until(plus2, 0.0) == when.timestamp()


def test_until_takes_iso_text_with_a_timezone() -> None:
    assert until("2030-01-02T03:04:05+00:00", 0.0) == datetime(2030, 1, 2, 3, 4, 5,
                                                              tzinfo=UTC).timestamp()


def test_until_rejects_naive_datetimes() -> None:
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        until(datetime(2030, 1, 1), 0.0)
    with pytest.raises(ConfigurationError):
        until("2030-01-02T03:04:05", 0.0)  # naive ISO text is not a duration either


def test_compound_text_as_trigger_dev_writes_it() -> None:
    assert seconds("1h30m") == 5400.0
    assert seconds("2d12h") == 216000.0
    with pytest.raises(ConfigurationError):
        seconds("1h 30x")


def test_duration_text_is_the_shortest_unit_and_reads_back() -> None:
    for amount, text in ((86400, "1d"), (7200, "2h"), (600, "10m"), (90, "90s"), (1.5, "1500ms")):
        assert duration_text(amount) == text
        assert seconds(text) == amount
