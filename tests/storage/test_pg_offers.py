"""PostgreSQL: an idle worker's offer (migration 0023, storage/offers.py). A single trigger of a
run ready at once, of a task the offer names, in a queue without limits, stores the run already
claimed under the offer's lease and tells the worker with the run's row; every other trigger
leaves the offer alone and stores the run in its queue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from contract_helpers import NOW, spec

from backends import database_url
from tether.engine.triggering import TriggerOptions, build_run
from tether.storage import open_storage
from tether.storage.offers import Offer, took
from tether.storage.postgres.store import PostgresStorage
from tether.storage.queue_records import QueueRecord
from tether.storage.records import RunRecord
from tether.wakeup import WORKERS

LEASE = 30.0


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """Overrides the two-backend `db_url` of tests/conftest.py: offers are PostgreSQL's."""
    with database_url("postgres", tmp_path) as url:
        yield url


@pytest.fixture
def pg(db_url: str) -> Iterator[PostgresStorage]:
    store = open_storage(db_url)
    assert isinstance(store, PostgresStorage)
    store.migrate()
    yield store
    store.close()


def _offer(worker: str = "w1", token: str = "lease_offer", *, tasks: list[str] | None = None,
           queues: list[str] | None = None, now: float = NOW, usable: float = 10.0) -> Offer:
    return Offer(worker, token, tasks or ["t"], queues, "v1", now, now + LEASE, now + usable)


def _trigger(pg: PostgresStorage, task: str = "t", now: float = NOW, **options: Any) -> RunRecord:
    new = build_run(spec(task, options.pop("queue", "q")), {"n": 1}, TriggerOptions(**options),
                    now)
    [(record, _)] = pg.create_runs([new], now)
    found = pg.get_run(record.id)
    assert found is not None
    return found


def _offers(pg: PostgresStorage) -> list[dict[str, Any]]:
    return pg._all("SELECT * FROM run_offers ORDER BY worker_id")


def test_a_trigger_takes_a_fitting_offer_and_its_run_is_claimed_under_the_offers_lease(
    pg: PostgresStorage,
) -> None:
    listener = pg.bus.listen(WORKERS)
    pg.make_offer(_offer())
    run = _trigger(pg)
    assert run.status == "EXECUTING"
    assert (run.lease_token, run.worker_id, run.attempts) == ("lease_offer", "w1", 1)
    assert run.lease_expires_at == NOW + LEASE  # the worker's clock at the offer, plus the lease
    assert run.attempt_started_at == run.started_at == NOW and run.version == "v1"
    assert _offers(pg) == []  # taken: gone
    messages = listener.wait(2.0)
    parsed = [took(m) for m in messages if took(m) is not None]
    assert len(parsed) == 1 and parsed[0] is not None and parsed[0][0] == "w1"
    sent = RunRecord.from_mapping(json.loads(parsed[0][1]))
    assert sent == run  # the message carries the row as stored
    # the next trigger finds no offer: queued, and the workers are woken as always
    second = _trigger(pg)
    assert second.status == "QUEUED" and second.lease_token is None
    listener.close()


@pytest.mark.parametrize("case", ["other task", "other queue", "delayed", "expired offer",
                                  "limited queue", "rate limited queue", "paused queue",
                                  "length limited queue", "idempotency key"])
def test_a_trigger_leaves_an_offer_that_does_not_fit(pg: PostgresStorage, case: str) -> None:
    options: dict[str, Any] = {}
    offer = _offer(tasks=["t", "u"], queues=["q", "limited"])
    task = "t"
    if case == "other task":
        task = "x"
    elif case == "other queue":
        options["queue"] = "elsewhere"
    elif case == "delayed":
        options["delay"] = 5.0
    elif case == "expired offer":
        offer = _offer(now=NOW - 20, usable=10.0)
    elif case == "idempotency key":
        options["idempotency_key"] = "k"
    else:
        options["queue"] = "limited"
        record = {"limited queue": QueueRecord("limited", 2),
                  "rate limited queue": QueueRecord("limited", None, rate_limit=10.0,
                                                    rate_period=1.0, rate_burst=1,
                                                    rate_scope="queue"),
                  "paused queue": QueueRecord("limited", None, paused=True),
                  "length limited queue": QueueRecord("limited", None, max_queued=100)}[case]
        pg.ensure_queues([record], NOW)
        if record.paused:
            pg.set_queue_paused("limited", True, NOW)
    pg.make_offer(offer)
    run = _trigger(pg, task, **options)
    assert run.status in ("QUEUED", "DELAYED") and run.lease_token is None, case
    assert [o["token"] for o in _offers(pg)] == ["lease_offer"], case


def test_an_offer_is_made_anew_and_withdrawn(pg: PostgresStorage) -> None:
    pg.make_offer(_offer(token="lease_a"))
    pg.make_offer(_offer(token="lease_b"))  # one offer a worker: the new one replaces it
    assert [o["token"] for o in _offers(pg)] == ["lease_b"]
    assert pg.withdraw_offer("w1", ["lease_a", "lease_b"]) == []
    assert _offers(pg) == []
    # withdrawn after a trigger took it: the run that took it comes back, to be handed back
    pg.make_offer(_offer(token="lease_c"))
    run = _trigger(pg)
    pg.make_offer(_offer(token="lease_d"))  # (one whose answer the worker did not hear yet)
    [taken] = pg.withdraw_offer("w1", ["lease_c", "lease_d"])
    assert taken.id == run.id and taken.lease_token == "lease_c"
    assert _offers(pg) == []  # whatever its token


def test_offers_of_workers_gone_for_a_minute_are_dropped_by_the_next_offer(
    pg: PostgresStorage,
) -> None:
    pg.make_offer(_offer("gone", "lease_gone", now=NOW - 200))
    pg.make_offer(_offer("w1", "lease_1"))
    assert [o["worker_id"] for o in _offers(pg)] == ["w1"]


def test_a_row_too_long_for_a_message_is_announced_by_its_id(pg: PostgresStorage) -> None:
    listener = pg.bus.listen(WORKERS)
    pg.make_offer(_offer())
    new = build_run(spec("t"), {"text": "x" * 9000}, TriggerOptions(), NOW)
    [(record, _)] = pg.create_runs([new], NOW)
    parsed = [took(m) for m in listener.wait(2.0) if took(m) is not None]
    assert parsed == [("w1", record.id)]
    listener.close()


def test_the_offer_statement_is_used_only_while_offers_are_taken(pg: PostgresStorage) -> None:
    """A producer looks for offers while its triggers take them, else once every PROBE s."""
    statements: list[bool] = []
    watch = pg._offers
    original = watch.statement

    def spy(ready: bool) -> str:
        sql = original(ready)
        statements.append("run_offers" in sql)
        return sql

    watch.statement = spy  # type: ignore[method-assign]
    for _ in range(3):
        _trigger(pg)  # no offer: the first looks, the next two do not
    pg.make_offer(_offer())
    watch._look_at = 0.0  # (the probe's time has come)
    _trigger(pg)  # takes it
    pg.make_offer(_offer(token="lease_2"))
    _trigger(pg)  # looks again at once: offers are being taken
    assert statements == [True, False, False, True, True]
    assert _offers(pg) == []
