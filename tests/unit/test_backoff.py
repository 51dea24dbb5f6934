"""Retry delays: the policy formula, its cap, and jitter bounds."""

from __future__ import annotations

import pytest

from tether.engine.backoff import retry_delay
from tether.options import Retry


@pytest.mark.parametrize(("attempt", "expected"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (7, 60.0),
                                                   (30, 60.0)])
def test_default_policy_without_jitter(attempt: int, expected: float) -> None:
    assert retry_delay(Retry(jitter=False), attempt) == expected


def test_formula_with_custom_policy() -> None:
    policy = Retry(min_delay=0.5, factor=3.0, max_delay=10.0, jitter=False)
    delays = [retry_delay(policy, n) for n in range(1, 6)]
    assert delays == [0.5, 1.5, 4.5, 10.0, 10.0]


def test_factor_one_is_constant() -> None:
    policy = Retry(min_delay=2.0, factor=1.0, jitter=False)
    assert {retry_delay(policy, n) for n in range(1, 10)} == {2.0}


def test_zero_min_delay_retries_at_once() -> None:
    assert retry_delay(Retry(min_delay=0.0, max_delay=0.0), 3) == 0.0


@pytest.mark.parametrize(("draw", "fraction"), [(0.0, 0.5), (0.5, 0.75), (1.0, 1.0)])
def test_jitter_uses_the_upper_half(draw: float, fraction: float) -> None:
    policy = Retry(min_delay=4.0, factor=2.0, max_delay=60.0, jitter=True)
    assert retry_delay(policy, 2, lambda: draw) == pytest.approx(8.0 * fraction)


def test_jitter_never_exceeds_max_delay() -> None:
    policy = Retry(min_delay=1.0, max_delay=5.0, jitter=True)
    for attempt in range(1, 12):
        base = min(5.0, 2.0 ** (attempt - 1))
        for draw in (0.0, 0.25, 0.999999, 1.0):
            delay = retry_delay(policy, attempt, lambda d=draw: d)  # type: ignore[misc]
            assert 0.5 * base <= delay <= base <= 5.0


def test_jitter_with_real_randomness_stays_in_bounds() -> None:
    policy = Retry(min_delay=10.0, max_delay=10.0)
    delays = [retry_delay(policy, 1) for _ in range(200)]
    assert all(5.0 <= d <= 10.0 for d in delays)
    assert len(set(delays)) > 1  # actually randomized
