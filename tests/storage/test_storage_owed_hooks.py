"""Storage contract: a crashed final attempt leaves its failure hook owed (in the commit that
ends it), one holder at a time takes it, and the reads behind the server's alerts."""

from __future__ import annotations

from contract_helpers import NOW, AddRun, Claim, finish

from tether.engine import states
from tether.models import RunStatus
from tether.options import Retry
from tether.storage.base import Storage
from tether.worker.housekeeping import reap

ERROR = '{"message": "boom", "type": "ValueError"}'


def test_a_crashed_final_attempt_owes_its_hook(storage: Storage, add_run: AddRun,
                                               claim: Claim) -> None:
    last = add_run({"n": 1}, max_attempts=1)
    retried = add_run({"n": 2}, max_attempts=2)
    claim("w1")
    # the worker w1 died: the reaper of another worker ends both attempts
    assert reap(storage, NOW + 1, ["w1"]) == 2
    assert storage.get_run(last.id).status == RunStatus.FAILED  # type: ignore[union-attr]
    assert storage.get_run(retried.id).status == RunStatus.QUEUED  # type: ignore[union-attr]
    assert storage.owed_hooks() == [last.id]  # a crash with attempts left owes nothing


def test_an_ordinary_failure_owes_no_hook(storage: Storage, add_run: AddRun,
                                          claim: Claim) -> None:
    add_run(max_attempts=1)
    [claimed] = claim("w1")
    failed = states.attempt_failed(attempt=1, max_attempts=1, policy=Retry(), error_json=ERROR,
                                   now=NOW)
    assert finish(storage, claimed.lease, failed, NOW + 1) is not None
    assert storage.owed_hooks() == []  # its worker runs the hook itself


def test_one_holder_at_a_time_until_its_hold_ends(storage: Storage, add_run: AddRun,
                                                  claim: Claim) -> None:
    run = add_run(max_attempts=1)
    other_task = add_run(task="u", max_attempts=1)
    claim("w1")
    reap(storage, NOW + 1, ["w1"])
    assert storage.take_owed_hooks(["t"], "a", NOW + 2, 60) == [run.id]
    assert storage.take_owed_hooks(["t"], "b", NOW + 3, 60) == []  # held by a
    assert storage.take_owed_hooks([], "b", NOW + 3, 60) == []
    # a died while holding it: b takes it once the hold is over; a's settle no longer counts
    assert storage.take_owed_hooks(["t"], "b", NOW + 63, 60) == [run.id]
    storage.settle_owed_hook(run.id, "a")
    assert storage.owed_hooks() == [run.id, other_task.id]
    storage.settle_owed_hook(run.id, "b")
    assert storage.owed_hooks() == [other_task.id]
    assert storage.take_owed_hooks(["t", "u"], "b", NOW + 64, 60) == [other_task.id]


def test_settings_replace(storage: Storage) -> None:
    assert storage.get_setting("alerts.cursor") is None
    storage.put_setting("alerts.cursor", "1.5")
    storage.put_setting("alerts.cursor", "2.5")
    assert storage.get_setting("alerts.cursor") == "2.5"
    assert storage.ensure_setting("alerts.cursor", "9") == "2.5"


def test_failures_since_and_oldest_ready(storage: Storage, add_run: AddRun,
                                         claim: Claim) -> None:
    add_run(max_attempts=1)
    add_run(max_attempts=1)
    first, second = claim("w1", limit=2)
    aborted = states.aborted(ERROR, "aborted")
    finish(storage, first.lease, aborted, NOW + 5)
    finish(storage, second.lease, states.timed_out(ERROR, 1.0), NOW + 7)
    assert storage.failures_since(NOW) == [(NOW + 5, first.record.id),
                                           (NOW + 7, second.record.id)]
    assert storage.failures_since(NOW + 5, first.record.id) == [(NOW + 7, second.record.id)]
    assert storage.failures_since(NOW + 5, "") == storage.failures_since(NOW, limit=2)
    assert storage.failures_since(NOW + 7, second.record.id) == []
    assert storage.failures_since(NOW + 8) == []

    assert storage.oldest_ready(NOW) == {}
    add_run(now=NOW + 10)
    add_run(now=NOW + 20, queue="other")
    add_run(now=NOW + 30)
    add_run(now=NOW + 10, delay=100)  # not ready yet
    assert storage.oldest_ready(NOW + 40) == {"q": NOW + 10, "other": NOW + 20}
