"""Schedules in SQLite: the statements behind the store's schedule methods. Each function takes
the store's connections (reads) or a connection inside a write transaction."""

from __future__ import annotations

import sqlite3
from typing import Any

from tether.storage.schedules import ScheduleRecord, SlotClaim
from tether.storage.sql import load_queries
from tether.storage.sqlite.connection import Connections

S = load_queries("tether.storage.sqlite", "schedules.sql")


def _params(schedule: ScheduleRecord) -> dict[str, Any]:
    return {**schedule.__dict__, "now": schedule.updated_at}


def save(db: Connections, schedule: ScheduleRecord) -> tuple[ScheduleRecord, bool]:
    with db.write() as conn:
        row = conn.execute(S["upsert"], _params(schedule)).fetchone()
    stored = ScheduleRecord.from_mapping(row)
    return stored, stored.id == schedule.id


def get(db: Connections, schedule_id: str) -> ScheduleRecord | None:
    row = db.read(S["get"], (schedule_id,)).fetchone()
    return None if row is None else ScheduleRecord.from_mapping(row)


def list_all(db: Connections) -> list[ScheduleRecord]:
    return [ScheduleRecord.from_mapping(r) for r in db.read(S["list"])]


def delete(db: Connections, schedule_id: str) -> bool:
    with db.write() as conn:
        return conn.execute(S["delete"], (schedule_id,)).rowcount == 1


def set_active(db: Connections, schedule_id: str, active: bool, next_run_at: float | None,
               now: float) -> ScheduleRecord | None:
    with db.write() as conn:
        row = conn.execute(S["set_active"], {"id": schedule_id, "active": int(active),
                                             "next_run_at": next_run_at, "now": now}).fetchone()
    return None if row is None else ScheduleRecord.from_mapping(row)


def due(db: Connections, now: float, limit: int) -> list[ScheduleRecord]:
    return [ScheduleRecord.from_mapping(r) for r in db.read(S["due"], (now, limit))]


def claim_slot(conn: sqlite3.Connection, claim: SlotClaim) -> bool:
    """Inside the write transaction that also stores the run."""
    return conn.execute(S["claim_slot"], claim.params()).rowcount == 1


def retire_declared(db: Connections, keep: list[str], now: float) -> list[str]:
    sql = f"{S['retire_declared']} ({','.join('?' * len(keep))}) RETURNING id"
    with db.write() as conn:
        return [r[0] for r in conn.execute(sql, [now, *keep]).fetchall()]
