"""Debounced triggers: repeated triggers within the delay collapse into one run."""

from __future__ import annotations

from typing import Any

import pytest
from engine_helpers import drain, record

from tether import ConfigurationError, Debounce, ManualClock, RunStatus, Tether, Worker


def _task(app: Tether) -> Any:
    @app.task
    async def reindex(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    return reindex


def test_triggers_within_the_delay_collapse_into_one_run(app: Tether, clock: ManualClock) -> None:
    reindex = _task(app)
    first = reindex.trigger({"n": 1}, debounce=Debounce("doc-7", 10))
    clock.advance(4)
    second = reindex.trigger({"n": 2}, debounce=Debounce("doc-7", 10))
    clock.advance(4)
    third = reindex.trigger({"n": 3}, debounce=Debounce("doc-7", 10))
    other = reindex.trigger({"n": 9}, debounce=Debounce("doc-8", 10))
    assert first.id == second.id == third.id != other.id
    assert record(app, first.id).available_at == pytest.approx(clock.now() + 10)  # pushed back

    clock.advance(9)
    assert drain(Worker(app)) == 0  # 9 s after the last trigger: not yet
    clock.advance(1)
    assert drain(Worker(app)) == 2
    run = app.runs.retrieve(first.id)
    assert run.status == RunStatus.COMPLETED and run.output == {"n": 3}  # trailing: the last payload
    assert len(app.runs.list(task="reindex")) == 2


def test_leading_mode_keeps_the_first_payload(app: Tether, clock: ManualClock) -> None:
    reindex = _task(app)
    handle = reindex.trigger({"n": 1}, debounce=Debounce("k", "5s", mode="leading"))
    reindex.trigger({"n": 2}, debounce=Debounce("k", "5s", mode="leading"))
    clock.advance(5)
    drain(Worker(app))
    assert app.runs.retrieve(handle.id).output == {"n": 1}


def test_max_delay_caps_how_long_triggers_push_the_run_back(app: Tether, clock: ManualClock) -> None:
    reindex = _task(app)
    start = clock.now()
    handle = reindex.trigger({"n": 0}, debounce=Debounce("k", 10, max_delay=25))
    for n in range(1, 6):
        clock.advance(8)
        assert reindex.trigger({"n": n}, debounce=Debounce("k", 10, max_delay=25)).id == handle.id
    assert record(app, handle.id).available_at == pytest.approx(start + 25)


def test_a_trigger_after_the_run_started_makes_a_new_run(app: Tether, clock: ManualClock) -> None:
    reindex = _task(app)
    first = reindex.trigger({"n": 1}, debounce=Debounce("k", 1))
    clock.advance(1)
    drain(Worker(app))
    second = reindex.trigger({"n": 2}, debounce=Debounce("k", 1))
    assert second.id != first.id
    assert record(app, second.id).status == RunStatus.DELAYED


def test_batch_items_debounce_too(app: Tether) -> None:
    reindex = _task(app)
    handles = reindex.batch_trigger([{"n": 1}, {"n": 2}], debounce=Debounce("same", 3))
    assert handles[0].id == handles[1].id


def test_bad_debounce_options_are_clear_errors(app: Tether) -> None:
    reindex = _task(app)
    with pytest.raises(ConfigurationError, match="mode must be"):
        Debounce("k", 1, mode="middle")
    with pytest.raises(ConfigurationError, match="delay must be positive"):
        Debounce("k", 0)
    with pytest.raises(ConfigurationError, match=r"must be a tether\.Debounce"):
        reindex.trigger({}, debounce={"key": "k"})
