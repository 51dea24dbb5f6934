"""Cron slots: the pure time arithmetic of schedules. No I/O; times are passed in (epoch seconds).

Slots are computed in the schedule's own timezone by cronsim, which follows Debian's cron across
daylight-saving changes (checked in tests/unit/test_cron.py):

- a fixed time that falls in the hour skipped in spring (`30 1 * * *` on 2026-03-29 in
  Europe/London, where 01:00 jumps to 02:00) fires once, at the first minute after the gap (02:00);
- a fixed time that occurs twice in autumn (01:30 on 2026-10-25, when 02:00 falls back to 01:00)
  fires once, at its first occurrence (01:30 BST);
- an expression with a wildcard minute or hour (`*/15 * * * *`, `0 * * * *`) follows elapsed time:
  every real hour fires, both 01:00s in autumn included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from tether.errors import ConfigurationError

MISSED = ("once", "skip")  # slots missed while no worker ran: fire the latest once, or skip them
MISSED_GRACE = 60.0  # a slot fired later than this counts as missed (for missed="skip")


@dataclass(frozen=True)
class CronSpec:
    """A validated cron expression, its timezone and what to do about missed slots."""

    cron: str
    timezone: str = "UTC"
    missed: str = "once"


def zone(name: str) -> tzinfo:
    return UTC if name == "UTC" else ZoneInfo(name)


def cron_spec(cron: object, timezone: object = "UTC", missed: object = "once", *,
              where: str) -> CronSpec:
    """Validate a schedule's options; `where` names it in errors ("task 'report'")."""
    if not isinstance(cron, str) or len(cron.split()) != 5:
        raise ConfigurationError(
            f"{where}: cron must have 5 fields (minute hour day-of-month month day-of-week), "
            f"got {cron!r}")
    expr = " ".join(cron.split())
    if not isinstance(timezone, str) or not timezone:
        raise ConfigurationError(f"{where}: timezone must be an IANA name like 'Europe/London'")
    try:
        tz = zone(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"{where}: unknown timezone {timezone!r} (an IANA name like 'Europe/London')") from None
    if missed not in MISSED:
        raise ConfigurationError(f"{where}: missed must be 'once' or 'skip', got {missed!r}")
    try:
        next(CronSim(expr, datetime(2000, 1, 1, tzinfo=tz)))
    except CronSimError as exc:
        raise ConfigurationError(f"{where}: invalid cron expression {cron!r}: {exc}") from None
    except StopIteration:
        raise ConfigurationError(f"{where}: cron expression {cron!r} never matches") from None
    return CronSpec(expr, timezone, str(missed))


def next_slot(cron: str, timezone: str, after: float) -> float | None:
    """The first slot strictly after `after`, or None if there is none within 50 years."""
    slots = CronSim(cron, datetime.fromtimestamp(after, zone(timezone)))
    try:
        for _ in range(100):
            # A fixed time in the repeated autumn hour maps to its first occurrence, which can
            # lie before `after`: that slot has passed, so look further.
            slot = next(slots).timestamp()
            if slot > after:
                return slot
    except StopIteration:
        return None
    return None


def latest_slot(cron: str, timezone: str, at: float) -> float | None:
    """The last slot at or before `at`, if any within 50 years."""
    slots = CronSim(cron, datetime.fromtimestamp(int(at) + 1, zone(timezone)), reverse=True)
    found: float | None = None
    try:
        for _ in range(100):
            found = next(slots).timestamp()
            if found <= at:
                break
    except StopIteration:
        return None
    if found is None or found > at:
        return None
    # Walking back on the wall clock can step over a slot in the repeated autumn hour; forward
    # from the candidate finds it.
    for _ in range(100):
        later = next_slot(cron, timezone, found)
        if later is None or later > at:
            break
        found = later
    return found


def upcoming(cron: str, timezone: str, after: float, count: int) -> list[datetime]:
    """The next `count` slots after `after`, as datetimes in the schedule's timezone."""
    out: list[datetime] = []
    at: float | None = after
    while len(out) < count and at is not None:
        at = next_slot(cron, timezone, at)
        if at is not None:
            out.append(datetime.fromtimestamp(at, zone(timezone)))
    return out


def iso(ts: float | None) -> str | None:
    """ISO-8601 in UTC, as scheduled payloads carry times."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()
