"""Ending many attempts with one statement on SQLite. A busy worker ends about ten attempts per
commit; one UPDATE for those that need nothing but their transition (no last writes, no wait,
no run in line to hand the place to) takes each row's values from a VALUES list, instead of one
statement (and its binding and its result) per attempt, all under the write lock. The values
are bound as they are: the same types as the one-row statement (finish_run) gets."""

from __future__ import annotations

import functools
import sqlite3
from typing import Any

from tether.storage.records import Finish

_ROWS = 50  # attempts per statement (10 parameters each)


@functools.lru_cache(maxsize=_ROWS)
def _statement(rows: int) -> str:
    values = ",".join(["(?,?,?,?,?,?,?,?,?)"] * rows)
    return ("UPDATE runs SET status = v.column3, output = coalesce(v.column4, runs.output),"
            " error = v.column5, available_at = coalesce(v.column6, runs.available_at),"
            " attempts = runs.attempts - v.column7, lease_token = NULL, lease_expires_at = NULL,"
            " worker_id = NULL, updated_at = ?,"
            " finished_at = CASE WHEN v.column8 THEN ? ELSE NULL END, waiting_for = NULL"
            f" FROM (VALUES {values}) AS v"
            " WHERE runs.id = v.column1 AND runs.lease_token = v.column2"
            " AND (v.column9 IS NULL OR runs.lease_expires_at < v.column9)"
            " RETURNING *")


def finish_plain(conn: sqlite3.Connection, items: list[Finish], now: float
                 ) -> dict[str, tuple[str, sqlite3.Cursor, Any]]:
    """End the attempts of `items` (all `Finish.plain`); run id -> (statement, cursor, row) of each
    run whose lease still held, as the update left it."""
    ended: dict[str, tuple[str, sqlite3.Cursor, Any]] = {}
    for start in range(0, len(items), _ROWS):
        chunk = items[start:start + _ROWS]
        params: list[object] = [now, now]
        for item in chunk:
            t = item.transition
            params += (item.lease.run_id, item.lease.token, t.to, t.output, t.error,
                       t.available_at, int(t.refund_attempt), t.is_final, item.expired_before)
        sql = _statement(len(chunk))
        cursor = conn.execute(sql, params)
        for row in cursor.fetchall():
            ended[row["id"]] = (sql, cursor, row)
    return ended
