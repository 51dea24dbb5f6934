"""Cron slots (tether.cron): next and latest slots in a timezone, across DST changes, and the
validation of schedule options."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tether import ConfigurationError, Tether
from tether.cron import cron_spec, iso, latest_slot, next_slot, upcoming
from tether.storage.schedules import ScheduleRecord
from tether.worker.scheduler import slot_payload

LONDON = ZoneInfo("Europe/London")


def ts(*args: int, fold: int = 0) -> float:
    return datetime(*args, tzinfo=LONDON, fold=fold).timestamp()  # type: ignore[misc]


def local(slot: float | None) -> str:
    assert slot is not None
    return datetime.fromtimestamp(slot, LONDON).isoformat()


def slots_between(cron: str, start: float, end: float) -> list[str]:
    out: list[str] = []
    at = next_slot(cron, "Europe/London", start)
    while at is not None and at < end:
        out.append(local(at))
        at = next_slot(cron, "Europe/London", at)
    return out


def test_next_slot_is_strictly_after_and_in_the_timezone() -> None:
    assert next_slot("0 9 * * *", "Europe/London", ts(2026, 1, 5, 8, 0)) == ts(2026, 1, 5, 9, 0)
    assert next_slot("0 9 * * *", "Europe/London", ts(2026, 1, 5, 9, 0)) == ts(2026, 1, 6, 9, 0)
    assert next_slot("0 9 * * *", "Europe/London", ts(2026, 7, 5, 8, 0)) == ts(2026, 7, 5, 9, 0)
    assert next_slot("* * * * *", "UTC", 120.0) == 180.0
    assert next_slot("* * * * *", "UTC", 119.5) == 120.0


def test_spring_forward_a_time_in_the_skipped_hour_fires_once_right_after_the_gap() -> None:
    # 2026-03-29: 01:00 GMT jumps to 02:00 BST, so 01:30 never happens that day
    assert slots_between("30 1 * * *", ts(2026, 3, 28, 12), ts(2026, 3, 31, 0)) == [
        "2026-03-29T02:00:00+01:00",
        "2026-03-30T01:30:00+01:00",
    ]


def test_fall_back_a_time_in_the_repeated_hour_fires_once_at_its_first_occurrence() -> None:
    # 2026-10-25: 02:00 BST falls back to 01:00 GMT, so 01:30 happens twice that day
    assert slots_between("30 1 * * *", ts(2026, 10, 24, 12), ts(2026, 10, 27, 0)) == [
        "2026-10-25T01:30:00+01:00",
        "2026-10-26T01:30:00+00:00",
    ]
    # from inside the repeated hour, the day's 01:30 has passed already
    assert local(next_slot("30 1 * * *", "Europe/London", ts(2026, 10, 25, 1, 10, fold=1))) == \
        "2026-10-26T01:30:00+00:00"


def test_wildcard_hours_follow_elapsed_time_across_fall_back() -> None:
    after = ts(2026, 10, 25, 0, 30)
    assert [d.isoformat() for d in upcoming("0 * * * *", "Europe/London", after, 4)] == [
        "2026-10-25T01:00:00+01:00", "2026-10-25T01:00:00+00:00",
        "2026-10-25T02:00:00+00:00", "2026-10-25T03:00:00+00:00"]


def test_latest_slot_is_at_or_before() -> None:
    assert latest_slot("* * * * *", "UTC", 120.0) == 120.0
    assert latest_slot("* * * * *", "UTC", 179.9) == 120.0
    assert local(latest_slot("30 1 * * *", "Europe/London", ts(2026, 3, 29, 12))) == \
        "2026-03-29T02:00:00+01:00"
    # inside the repeated autumn hour: the day's first 01:30 is the latest slot
    assert local(latest_slot("30 1 * * *", "Europe/London", ts(2026, 10, 25, 1, 10, fold=1))) == \
        "2026-10-25T01:30:00+01:00"


@pytest.mark.parametrize(("cron", "timezone", "missed", "fragment"), [
    ("61 * * * *", "UTC", "once", "invalid cron expression '61 * * * *': Bad minute"),
    ("* * * *", "UTC", "once", "cron must have 5 fields"),
    ("0 * * * * *", "UTC", "once", "cron must have 5 fields"),
    ("0 0 31 2 *", "UTC", "once", "Bad day-of-month"),
    ("0 * * * *", "Mars/Olympus", "once", "unknown timezone 'Mars/Olympus'"),
    ("0 * * * *", "UTC", "sometimes", "missed must be 'once' or 'skip'"),
])
def test_cron_spec_rejects_bad_options_naming_the_schedule(cron: str, timezone: str, missed: str,
                                                          fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        cron_spec(cron, timezone, missed, where="task 'report'")
    assert str(info.value).startswith("task 'report': ")
    assert fragment in str(info.value)


def test_cron_spec_normalizes_whitespace() -> None:
    assert cron_spec(" 0  9 * * MON ", "Europe/London", where="x").cron == "0 9 * * MON"


@pytest.mark.parametrize(("options", "fragment"), [
    ({"cron": "every hour"}, "task 'report': cron must have 5 fields"),
    ({"cron": "0 * * * *", "timezone": "Europe/Londn"}, "task 'report': unknown timezone"),
    ({"timezone": "UTC"}, "task 'report': timezone and cron_missed need cron="),
    ({"cron": "0 * * * *", "cron_missed": "never"}, "task 'report': missed must be"),
])
def test_the_decorator_validates_schedule_options(options: dict[str, Any], fragment: str) -> None:
    app = Tether("sqlite:////nonexistent/never-opened.db")
    with pytest.raises(ConfigurationError, match=fragment):
        app.task(id="report", **options)(lambda payload: None)


def test_a_declared_schedule_is_kept_on_the_task() -> None:
    app = Tether("sqlite:////nonexistent/never-opened.db")

    @app.task(cron="0 9 * * *", timezone="Europe/London", cron_missed="skip")
    def report(payload: Any) -> None: ...

    assert report.schedule == cron_spec("0 9 * * *", "Europe/London", "skip", where="")
    assert app.task(id="plain")(lambda payload: None).schedule is None


def test_slot_payload() -> None:
    record = ScheduleRecord("sched_1", "report", "0 * * * *", "Europe/London", "once", "cust-9",
                            None, 1, 0, 7200.0, 3600.0, 0.0, 0.0)
    assert slot_payload(record, 7200.0) == {
        "timestamp": "1970-01-01T02:00:00+00:00", "last_timestamp": "1970-01-01T01:00:00+00:00",
        "timezone": "Europe/London", "schedule_id": "sched_1", "external_id": "cust-9"}
    assert iso(None) is None
