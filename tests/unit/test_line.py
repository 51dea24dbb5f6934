"""The books of runs held in line (worker/line.py): how many to ask for, which are extra."""

from __future__ import annotations

from collections import Counter

from tether.storage.records import ClaimedRun, Lease, RunRecord
from tether.worker.line import DEPTH, STANDBY_MAX_SECONDS, Line


def _in_line(run_id: str, queue: str = "q", key: str = "") -> ClaimedRun:
    record = RunRecord.from_mapping({**{name: None for name in RunRecord.__dataclass_fields__},
                                     "id": run_id, "queue": queue, "concurrency_key": key})
    return ClaimedRun(record, Lease(run_id, "lease", 1, "w"), False, standby=True)


def test_asks_only_for_queues_whose_attempts_are_short() -> None:
    line = Line()
    holders = Counter({("q", ""): 3, ("slow", ""): 2})
    assert line.wanted(lambda: holders) == []  # no attempt ended yet: durations unknown
    line.ended("q", 0.01)
    line.ended("slow", STANDBY_MAX_SECONDS * 4)
    assert line.wanted(lambda: holders) == [("q", "", 3 * DEPTH)]
    line.add(_in_line("a"))
    # DEPTH in line per place held, asked for after every run taken
    assert line.wanted(lambda: holders) == [("q", "", 3 * DEPTH - 1)]
    line.granted(got=1, asked=2)
    assert line.wanted(lambda: holders) == []  # the queue ran dry: closed until triggered
    line.open = True
    line.enabled = False
    assert line.wanted(lambda: holders) == []


def test_takes_in_order_drops_and_gives_back_the_extra() -> None:
    line = Line()
    for run_id in ("a", "b", "c"):
        line.add(_in_line(run_id))
    line.add(_in_line("k", key="customer"))
    first = line.take(("q", ""))
    assert first is not None and first.record.id == "a" and line.started == 1
    line.drop(["b"])
    assert sorted(line.ids()) == ["c", "k"]
    kept = ["c"] + [f"d{i}" for i in range(1, DEPTH)]  # DEPTH in line for one place held
    for run_id in [*kept[1:], "newest"]:
        line.add(_in_line(run_id))
    extra = line.extra(Counter({("q", ""): 1}))  # one place held in q, none for the key
    assert sorted(c.record.id for c in extra) == ["k", "newest"]
    assert line.take(("q", "customer")) is None
    assert line
    assert [c.record.id for c in line.clear()] == kept and line.ids() == [] and not line
