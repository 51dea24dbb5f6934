"""Queue(max_queued=..., on_key_limit=...): validated when written (property tests), kept
through the task registry's JSON (a server without the code triggers with them)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether import ConfigurationError, Queue, Tether
from tether.options import ON_KEY_LIMIT
from tether.task import TaskSpec

anything = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                     st.text(max_size=20))


def _valid(concurrency: Any, max_queued: Any, on_key_limit: Any) -> bool:
    def count(value: Any) -> bool:
        return value is None or (type(value) is int and value >= 1)

    return (count(concurrency) and count(max_queued) and on_key_limit in ON_KEY_LIMIT
            and (on_key_limit == "queue" or concurrency is not None))


@settings(max_examples=400, deadline=None)
@given(concurrency=st.one_of(anything, st.integers(1, 50)),
       max_queued=st.one_of(anything, st.integers(1, 10**6)),
       on_key_limit=st.one_of(st.sampled_from(ON_KEY_LIMIT), st.text(max_size=20), st.none()))
def test_a_queue_is_built_exactly_when_its_options_hold(concurrency: Any, max_queued: Any,
                                                         on_key_limit: Any) -> None:
    if _valid(concurrency, max_queued, on_key_limit):
        queue = Queue("q", concurrency, max_queued=max_queued, on_key_limit=on_key_limit)
        assert (queue.concurrency, queue.max_queued, queue.on_key_limit) == (
            concurrency, max_queued, on_key_limit)
    else:
        with pytest.raises(ConfigurationError, match="Queue"):
            Queue("q", concurrency, max_queued=max_queued, on_key_limit=on_key_limit)


@settings(max_examples=200, deadline=None)
@given(concurrency=st.one_of(st.none(), st.integers(1, 50)),
       max_queued=st.one_of(st.none(), st.integers(1, 10**9)),
       on_key_limit=st.sampled_from(ON_KEY_LIMIT))
def test_queue_settings_survive_the_task_registry(concurrency: int | None, max_queued: int | None,
                                                  on_key_limit: str) -> None:
    if on_key_limit != "queue" and concurrency is None:
        concurrency = 1
    queue = Queue("q", concurrency, max_queued=max_queued, on_key_limit=on_key_limit)
    app = Tether("sqlite:///never-opened.db")

    @app.task(queue=queue)
    def job(payload: Any) -> None: ...

    assert TaskSpec.from_record(job.record(0.0)).queue == queue


def test_a_cancel_strategy_without_concurrency_says_what_it_needs() -> None:
    with pytest.raises(ConfigurationError, match="on_key_limit='cancel_newest' needs a concurrency"):
        Queue("q", on_key_limit="cancel_newest")
    with pytest.raises(ConfigurationError, match="one of queue, cancel_in_progress, cancel_newest"):
        Queue("q", concurrency=1, on_key_limit="drop")
    with pytest.raises(ConfigurationError, match="max_queued must be an integer >= 1"):
        Queue("q", max_queued=0)
