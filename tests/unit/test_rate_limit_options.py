"""RateLimit and the queue options that go with it (issue 22): what is accepted, what is refused
with a clear message, how a period is read, and the rate key a payload function gives."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether import ConfigurationError, Queue, RateLimit
from tether.options import stored_key
from tether.task import TaskSpec, queue_record


@given(limit=st.one_of(st.integers(1, 10**6), st.floats(0.001, 1e6)),
       amount=st.integers(1, 10**4), unit=st.sampled_from(["ms", "s", "m", "h", "d"]),
       burst=st.integers(1, 10**4))
@settings(max_examples=200, deadline=None)
def test_valid_limits_are_kept_as_given(limit: float, amount: int, unit: str, burst: int) -> None:
    seconds = amount * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    for period in (f"{amount}{unit}", timedelta(seconds=seconds), seconds):
        rate = RateLimit(limit, period, burst)
        assert math.isclose(rate.seconds, seconds)
        assert (rate.limit, rate.burst, rate.scope) == (limit, burst, "queue")
        record = queue_record(Queue("q", rate_limit=rate))
        assert record.rate_limit == float(limit) and record.rate_burst == burst
        assert record.rate_period is not None and math.isclose(record.rate_period, seconds)


@given(st.one_of(st.integers(max_value=0), st.floats(max_value=0), st.just(math.nan),
                 st.just(math.inf), st.booleans(), st.text(max_size=5), st.none()))
@settings(max_examples=100, deadline=None)
def test_a_limit_that_is_not_a_positive_number_is_refused(limit: Any) -> None:
    with pytest.raises(ConfigurationError, match="RateLimit limit must be a positive number"):
        RateLimit(limit, "1s")


@given(st.one_of(st.integers(max_value=0), st.booleans(), st.floats(), st.text(max_size=3)))
@settings(max_examples=100, deadline=None)
def test_a_burst_below_one_or_not_an_integer_is_refused(burst: Any) -> None:
    with pytest.raises(ConfigurationError, match="RateLimit burst"):
        RateLimit(10, "1s", burst)


@given(st.one_of(st.text(max_size=8).filter(lambda t: t.strip() not in ("",) and not any(
    c.isdigit() for c in t)), st.just("0s"), st.just(0), st.just(-1), st.just("1 fortnight")))
@settings(max_examples=100, deadline=None)
def test_a_period_that_is_not_a_positive_duration_is_refused(period: Any) -> None:
    with pytest.raises(ConfigurationError, match="RateLimit period"):
        RateLimit(10, period)


@pytest.mark.parametrize("key", ["tenant", 3, object()])
def test_a_key_must_be_none_concurrency_key_or_a_function(key: Any) -> None:
    with pytest.raises(ConfigurationError, match="RateLimit key must be None"):
        RateLimit(10, "1s", key=key)


def test_scopes() -> None:
    assert RateLimit(1, 1, key="concurrency_key").scope == "concurrency_key"
    assert RateLimit(1, 1, key=lambda p: "x").scope == "payload"


@given(st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t))
@settings(max_examples=100, deadline=None)
def test_a_payload_key_function_gives_the_run_its_key(tenant: str) -> None:
    rate = RateLimit(5, "1m", key=lambda payload: payload["tenant"])
    assert rate.key_of("t", {"tenant": tenant}) == tenant


@pytest.mark.parametrize(("fn", "message"), [
    (lambda payload: payload["missing"], "raised KeyError"),
    (lambda payload: 42, "must return a string of 1 to 512 characters"),
    (lambda payload: "", "must return a string of 1 to 512 characters"),
    (lambda payload: "x" * 513, "must return a string of 1 to 512 characters"),
])
def test_a_payload_key_function_that_fails_is_a_clear_error(fn: Any, message: str) -> None:
    rate = RateLimit(5, "1m", key=fn)
    with pytest.raises(ConfigurationError, match=f"task 'mail'.*{message}"):
        rate.key_of("mail", {"tenant": "a"})


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"total_concurrency": 4}, "needs a per-key concurrency"),
    ({"concurrency": 5, "total_concurrency": 4}, "needs a per-key concurrency"),
    ({"concurrency": 2, "total_concurrency": 0}, "total_concurrency must be >= 1"),
    ({"concurrency": 2, "total_concurrency": True}, "total_concurrency must be >= 1"),
    ({"rate_limit": 100}, "rate_limit must be a tether.RateLimit"),
])
def test_queue_refuses_bad_flow_options(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Queue("q", **kwargs)


def test_a_limit_read_back_from_the_registry_keeps_its_numbers() -> None:
    queue = Queue("q", concurrency=2, total_concurrency=6,
                  rate_limit=RateLimit(30, "1m", 3, key=lambda p: p["t"]))
    spec = TaskSpec("t", queue, __import__("tether").Retry(), None, None)
    again = TaskSpec.from_record(spec.to_record("v1", 0.0))
    assert queue_record(again.queue) == queue_record(queue)
    assert again.queue.rate_limit is not None and again.queue.rate_limit.key is stored_key
    # without the task's code the run's rate key is left to its concurrency key
    assert again.queue.rate_limit.key_of("t", {"t": "x"}) is None


def test_the_queue_wide_places_key_is_reserved() -> None:
    from tether.engine.triggering import TriggerOptions, build_run
    from tether.options import TOTAL_KEY

    spec = TaskSpec("t", Queue("q"), __import__("tether").Retry(), None, None)
    with pytest.raises(ConfigurationError, match="reserved"):
        build_run(spec, None, TriggerOptions(concurrency_key=TOTAL_KEY), 0.0)
