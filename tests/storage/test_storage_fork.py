"""Storage contract: a fork stores its new run, a copy of the source's step rows below a
position (positions kept) and its FORKED event in one transaction."""

from __future__ import annotations

import json

from contract_helpers import NOW, AddRun, Claim, spec

from tether.engine.triggering import TriggerOptions, build_run
from tether.models import RunStatus
from tether.storage.base import Storage
from tether.storage.records import Fork, StepRecord


def _step(key: str, seq: int | None, kind: str = "step", output: str = "1") -> StepRecord:
    return StepRecord(key, key, kind, "COMPLETED", output, None, 1, NOW + (seq or 9), NOW + 10, seq)


def test_a_fork_copies_the_rows_before_its_position(
        storage: Storage, add_run: AddRun, claim: Claim) -> None:
    add_run({"x": 1})
    [source] = claim("w1")
    rows = [_step("load", 1, output='{"a": 1}'), _step("charge", 2), _step("sleep", 3, "sleep"),
            _step("receipt", 4), _step("patch:p", None, "patch", "false")]
    for row in rows:
        storage.save_step(source.lease, row)
    new = build_run(spec(), {"x": 1}, TriggerOptions(metadata={"k": "v"}), NOW + 20)
    record, copied = storage.create_fork(Fork(new, source.record.id, 3, "forked at 'sleep'"),
                                         NOW + 20)
    assert copied == 2
    assert record.id == new.id and record.status == RunStatus.QUEUED and record.attempts == 0
    stored = storage.get_run(new.id)
    assert stored is not None and stored.metadata == new.metadata
    assert stored.created_at == NOW + 20
    kept = storage.load_steps(new.id)
    assert kept == {"load": rows[0], "charge": rows[1]}  # every field, the positions too
    assert len(storage.load_steps(source.record.id)) == 5  # the source is left alone
    [event] = storage.list_events(new.id)
    assert (event.kind, event.name, event.at) == ("status", "FORKED", NOW + 20)
    assert json.loads(event.data) == {"reason": "forked at 'sleep'",
                                      "forked_from": source.record.id}
    [claimed] = claim("w2", now=NOW + 21)  # an ordinary queued run
    assert claimed.record.id == new.id and claimed.lease.attempt == 1


def test_a_fork_from_the_first_call_copies_nothing(
        storage: Storage, add_run: AddRun, claim: Claim) -> None:
    add_run()
    [source] = claim("w1")
    storage.save_step(source.lease, _step("load", 1))
    new = build_run(spec(), None, TriggerOptions(), NOW)
    _, copied = storage.create_fork(Fork(new, source.record.id, 1, "from the start"), NOW)
    assert copied == 0 and storage.load_steps(new.id) == {}
