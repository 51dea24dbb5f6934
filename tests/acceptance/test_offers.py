"""PostgreSQL, real worker processes: an idle worker's offer (storage/offers.py). Runs triggered
one after another while the worker waits start without a claim; a worker frozen (SIGSTOP) or
killed (SIGKILL) after a run took its offer never starts it once its lease ran out by its own
clock, and another worker runs it; a worker that stops withdraws its offer."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from acceptance_support import WorkerProcess, Workers, read_lines, wait_for_status, wait_until

from backends import database_url
from tether import RunStatus, Tether
from tether.storage.postgres.store import PostgresStorage

pytestmark = pytest.mark.slow


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """Overrides the two-backend `db_url` of tests/conftest.py: offers are PostgreSQL's."""
    with database_url("postgres", tmp_path) as url:
        yield url


def _offers(client: Tether) -> list[dict[str, Any]]:
    storage = client.storage
    assert isinstance(storage, PostgresStorage)
    return storage._all("SELECT * FROM run_offers")


def _starts(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in read_lines(path)]


def _started_at_trigger(client: Tether, run_id: str) -> bool:
    """Whether the run's attempt started when it was stored: a trigger that took an offer
    stores the run claimed, at its own time; a claim comes later."""
    run = client.storage.get_run(run_id)
    attempts = client.storage.list_attempts(run_id)
    return run is not None and len(attempts) == 1 and attempts[0].started_at == run.created_at


def _wait_offer(client: Tether, workers: Workers) -> dict[str, Any]:
    return wait_until(lambda: next(iter(_offers(client)), None), 10.0,
                      lambda: "no offer was made\n" + workers.describe())


def test_runs_triggered_one_at_a_time_take_the_idle_workers_offer(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    worker = start_worker(app_file("offers_app.py"))
    _wait_offer(client, workers)
    for n in range(5):
        handle = client.trigger("noted", n)
        assert handle.result(timeout=10) == n
        assert _started_at_trigger(client, handle.id), (n, workers.describe())
    starts = _starts(tmp_path / "starts.log")
    assert [s["n"] for s in starts] == list(range(5))
    assert {s["pid"] for s in starts} == {worker.pid}
    _wait_offer(client, workers)  # made again in the last ending's commit
    worker.send(signal.SIGTERM)
    assert worker.wait_exit() == 0
    assert _offers(client) == []  # withdrawn as it stopped


def test_a_frozen_worker_never_starts_the_run_that_took_its_offer_once_its_lease_ran_out(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    app = app_file("offers_app.py")
    first = start_worker(app)
    offer = _wait_offer(client, workers)
    first.send(signal.SIGSTOP)
    handle = client.trigger("noted", 1)
    run = client.storage.get_run(handle.id)
    assert run is not None and run.status == "EXECUTING"  # it took the frozen offer
    assert run.lease_token == offer["token"]
    second = start_worker(app)  # takes the run over once its lease (2 s) expired
    wait_for_status(client, handle.id, RunStatus.COMPLETED, timeout=20, context=workers.describe)
    resumed_at = time.time()
    first.send(signal.SIGCONT)  # the message of the run that took its offer is read now
    time.sleep(1.0)
    starts = _starts(tmp_path / "starts.log")
    assert [(s["n"], s["pid"]) for s in starts] == [(1, second.pid)], workers.describe()
    assert not [s for s in starts if s["at"] >= resumed_at], workers.describe()
    assert first.proc.poll() is None
    # and the resumed worker goes on serving
    second.send(signal.SIGTERM)
    assert second.wait_exit() == 0
    after = client.trigger("noted", 2)
    assert after.result(timeout=10) == 2
    assert _starts(tmp_path / "starts.log")[-1]["pid"] == first.pid


def test_a_run_that_took_the_offer_of_a_killed_worker_runs_on_another(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    app = app_file("offers_app.py")
    first = start_worker(app)
    _wait_offer(client, workers)
    first.send(signal.SIGSTOP)  # (so that it cannot start the run before it is killed)
    handle = client.trigger("noted", 1)
    run = client.storage.get_run(handle.id)
    assert run is not None and run.status == "EXECUTING"
    first.send(signal.SIGKILL)
    first.wait_exit()
    second = start_worker(app)
    assert handle.result(timeout=20) == 1
    starts = _starts(tmp_path / "starts.log")
    assert [(s["n"], s["pid"]) for s in starts] == [(1, second.pid)], workers.describe()


def test_a_worker_of_one_place_makes_no_offer_and_claims_as_before(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether,
) -> None:
    """An open offer keeps one of the worker's places: with one place, it would claim nothing
    while it waits (a batch's runs cannot take an offer)."""
    start_worker(app_file("offers_app.py"), "--concurrency", "1")
    time.sleep(0.5)  # idle
    assert _offers(client) == []
    handles = client.batch_trigger("noted", [1, 2, 3])
    assert [h.result(timeout=10) for h in handles] == [1, 2, 3]
    assert _offers(client) == []


def test_a_worker_stopping_as_a_run_takes_its_offer_leaves_that_run_to_no_lease(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    """SIGTERM reaches a frozen worker whose offer a run has just taken, the run's message
    lost: resumed, the worker withdraws its offer and hands the run back uncounted (or, when
    its poll came first, finds the run in the offer's renewal and finishes it before it exits).
    Either way the run is not left executing under a lease nobody renews."""
    app = app_file("offers_app.py")
    first = start_worker(app)
    _wait_offer(client, workers)
    first.send(signal.SIGSTOP)
    storage = client.storage
    assert isinstance(storage, PostgresStorage)
    channel = storage._channel
    storage._channel = lambda group: "tether_nobody"  # type: ignore[method-assign]
    handle = client.trigger("noted", 1)  # its "took" message goes nowhere
    storage._channel = channel  # type: ignore[method-assign]
    run = client.storage.get_run(handle.id)
    assert run is not None and run.status == "EXECUTING"
    first.send(signal.SIGTERM)
    time.sleep(0.2)
    first.send(signal.SIGCONT)
    assert first.wait_exit() == 0
    run = client.storage.get_run(handle.id)
    assert run is not None, workers.describe()
    assert _offers(client) == []  # withdrawn
    assert (run.status, run.lease_token) in (("COMPLETED", None), ("QUEUED", None)), (
        run, workers.describe())
    if run.status == "QUEUED":
        assert run.attempts == 0  # handed back, not counted
        second = start_worker(app)
        assert handle.result(timeout=10) == 1
        assert [(s["n"], s["pid"]) for s in _starts(tmp_path / "starts.log")] == [
            (1, second.pid)]
    else:
        assert [(s["n"], s["pid"]) for s in _starts(tmp_path / "starts.log")] == [
            (1, first.pid)]
