"""Schedules in PostgreSQL: the statements behind the store's schedule methods, each taking a
connection (the store runs them in a transaction where it matters)."""

from __future__ import annotations

from typing import Any

import psycopg

from tether.storage.schedules import ScheduleRecord, SlotClaim
from tether.storage.sql import load_queries

S = load_queries("tether.storage.postgres", "schedules.sql")
Conn = psycopg.Connection[Any]


def save(conn: Conn, schedule: ScheduleRecord) -> tuple[ScheduleRecord, bool]:
    row = conn.execute(S["upsert"], {**schedule.__dict__, "now": schedule.updated_at}).fetchone()
    stored = ScheduleRecord.from_mapping(row)
    return stored, stored.id == schedule.id


def get(conn: Conn, schedule_id: str) -> ScheduleRecord | None:
    row = conn.execute(S["get"], (schedule_id,)).fetchone()
    return None if row is None else ScheduleRecord.from_mapping(row)


def list_all(conn: Conn) -> list[ScheduleRecord]:
    return [ScheduleRecord.from_mapping(r) for r in conn.execute(S["list"]).fetchall()]


def delete(conn: Conn, schedule_id: str) -> bool:
    return conn.execute(S["delete"], (schedule_id,)).rowcount == 1


def set_active(conn: Conn, schedule_id: str, active: bool, next_run_at: float | None,
               now: float) -> ScheduleRecord | None:
    row = conn.execute(S["set_active"], {"id": schedule_id, "active": int(active),
                                         "next_run_at": next_run_at, "now": now}).fetchone()
    return None if row is None else ScheduleRecord.from_mapping(row)


def due(conn: Conn, now: float, limit: int) -> list[ScheduleRecord]:
    return [ScheduleRecord.from_mapping(r) for r in conn.execute(S["due"], (now, limit)).fetchall()]


def claim_slot(conn: Conn, claim: SlotClaim) -> bool:
    """Inside the transaction that also stores the run."""
    return conn.execute(S["claim_slot"], claim.params()).rowcount == 1


def retire_declared(conn: Conn, keep: list[str], now: float) -> list[str]:
    return [r["id"] for r in conn.execute(S["retire_declared"], (now, keep)).fetchall()]
