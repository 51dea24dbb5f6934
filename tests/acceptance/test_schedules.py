"""Schedules across processes: each slot fires exactly once however many workers fire it."""

from __future__ import annotations

import json
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from acceptance_support import (
    WorkerProcess,
    Workers,
    assert_clean_error,
    read_lines,
    run_cli,
    wait_for_lines,
)
from schedule_race import race

from tether import ManualClock, RunStatus, Tether
from tether.cron import iso, latest_slot
from tether.worker.scheduler import schedule_tag

pytestmark = pytest.mark.slow

MINUTE_0 = 1_800_000_000.0 - 1_800_000_000.0 % 60  # a minute boundary
SLOTS = 20


def test_three_workers_fire_a_due_slot_once(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, db_url: str, tmp_path: Path, tether_env: dict[str, str],
) -> None:
    app = app_file("schedule_app.py")
    for _ in range(3):
        start_worker(app, ready=False)
    for worker in workers.started:
        worker.wait_ready()
    # created "an hour ago": its slots since then were missed, the latest one is due now
    past = Tether(db_url, clock=ManualClock(time.time() - 3600))
    try:
        schedule = past.schedules.create(task="tick", cron="* * * * *")
    finally:
        past.close()
    wait_for_lines(tmp_path / "ticks.log", 1, context=workers.describe)
    time.sleep(2.5)  # every worker's housekeeping has looked at least twice since
    slots = Counter(json.loads(line)["timestamp"] for line in read_lines(tmp_path / "ticks.log"))
    assert set(slots.values()) == {1}, slots  # (a new minute may have begun: its slot too, once)
    runs = client.runs.list(tag=schedule_tag(schedule.id))
    assert len(runs) == len(slots) and all(r.status == RunStatus.COMPLETED for r in runs)
    first = min(slots)
    assert first == iso(latest_slot("* * * * *", "UTC", runs[-1].created_at.timestamp()))

    listed = run_cli("schedules", "list", env=tether_env, cwd=tmp_path)
    assert listed.returncode == 0, listed
    [yearly] = [line for line in listed.stdout.splitlines() if " yearly " in line]
    assert "0 0 1 1 *" in yearly and "Europe/London" in yearly and " yes " in yearly
    assert "-01-01 00:00 GMT" in yearly  # the next runs, in the schedule's timezone


def test_three_processes_racing_on_every_slot_fire_each_once(db_url: str, client: Tether) -> None:
    setup = Tether(db_url, clock=ManualClock(MINUTE_0 - 1))

    @setup.task(id="tick")
    def tick(payload: object) -> None: ...

    try:  # the racing processes know the task from the registry, as workers of other apps do
        setup.storage.register_tasks([tick.record(MINUTE_0)], [tick.queue_record()])
        schedule = setup.schedules.create(task="tick", cron="* * * * *")
    finally:
        setup.close()
    times = [MINUTE_0 + k * 60 + 1 for k in range(SLOTS)]  # each slot, one second late
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=race, args=(db_url, times, barrier, results)) for _ in range(3)]
    for proc in procs:
        proc.start()
    try:
        wins = [results.get(timeout=60) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    assert sum(wins) == SLOTS, wins
    runs = client.runs.list(tag=schedule_tag(schedule.id), limit=100)
    stamps = sorted(r.payload["timestamp"] for r in runs)
    assert stamps == [iso(MINUTE_0 + k * 60) for k in range(SLOTS)]
    assert all(p.exitcode == 0 for p in procs)


def test_schedules_from_the_command_line(db_url: str, client: Tether, tmp_path: Path,
                                         tether_env: dict[str, str]) -> None:
    @client.task(id="tick")
    def tick(payload: object) -> None: ...

    client.storage.register_tasks([tick.record(time.time())], [tick.queue_record()])

    def cli(*args: str) -> str:
        result = run_cli("schedules", *args, env=tether_env, cwd=tmp_path)
        assert result.returncode == 0, result
        return result.stdout.strip()

    created = cli("create", "tick", "30 1 * * *", "--timezone", "Europe/London",
                  "--deduplication-key", "nightly")
    schedule_id = created.split()[0]
    assert created.startswith(f"{schedule_id} active next=")
    assert cli("create", "tick", "30 1 * * *", "-z", "Europe/London",
               "--deduplication-key", "nightly").split()[0] == schedule_id
    assert cli("deactivate", schedule_id) == f"{schedule_id} inactive next=-"
    assert " no " in cli("list").splitlines()[1]
    assert cli("activate", schedule_id).startswith(f"{schedule_id} active next=")
    [listed] = json.loads(cli("list", "--json"))
    assert (listed["id"], listed["cron"], listed["active"]) == (schedule_id, "30 1 * * *", True)
    assert cli("delete", schedule_id) == f"{schedule_id} deleted"
    for args, fragment in ((("delete", schedule_id), "no schedule with id"),
                           (("create", "tick", "0 99 * * *"), "invalid cron expression"),
                           (("create", "nope", "0 * * * *"), "unknown task 'nope'")):
        assert_clean_error(run_cli("schedules", *args, env=tether_env, cwd=tmp_path), fragment)
