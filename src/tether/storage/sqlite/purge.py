"""Retention on SQLite: deleting finished runs with every row that names them, a batch per
short write transaction (SQLite's write lock is global: a long one would starve the workers'
claims). A mixin of SQLiteStorage; the rule is storage/retention.py's."""

from __future__ import annotations

import json
import sqlite3

from tether.clock import id_floor, id_seconds
from tether.storage.retention import (
    CURSOR_SETTING,
    FINISHED,
    REFERENCE_LIKE,
    SCAN_ROWS,
    Candidate,
    PurgeBatch,
    PurgeRule,
    cursor_text,
    read_cursor,
    tag_pairs,
    without_children_of,
)
from tether.storage.sqlite.access import SQLiteAccess

_FINISHED = ", ".join(f"'{s}'" for s in sorted(FINISHED))
_IDS = "(SELECT value FROM json_each(?))"
_WALK = ("SELECT id, task_id, status, finished_at, parent_id, created_at, tags FROM runs "
         "WHERE id > ? AND id < ? ORDER BY id LIMIT ?")
_DEPENDENTS = [f"DELETE FROM {table} WHERE run_id IN {_IDS}"
               for table in ("attempts", "events", "batch_items", "owed_hooks",
                             "wait_parts")]


def _ref(column: str) -> str:
    return f"CASE WHEN {column} LIKE '{REFERENCE_LIKE}' THEN {column} END"


def _walk(conn: sqlite3.Connection, rule: PurgeRule, after: str, limit: int) -> PurgeBatch:
    horizon = rule.horizon()
    if horizon is None:
        return PurgeBatch([], None)
    rows = [Candidate._make(r) for r in conn.execute(_WALK, (after, id_floor("run", horizon), limit))]
    chosen = rule.select(rows)
    parents = sorted({r.parent_id for r in chosen if r.parent_id is not None})
    if parents:
        waiting = {r[0] for r in conn.execute(
            f"SELECT id FROM runs WHERE id IN {_IDS} AND status NOT IN ({_FINISHED})",
            (json.dumps(parents),))}
        chosen = without_children_of(chosen, waiting)
    return PurgeBatch(chosen, rows[-1].id if len(rows) == limit else None)


def _delete(conn: sqlite3.Connection, chosen: list[Candidate],
            references: list[str]) -> list[Candidate]:
    """Delete the runs (still finished: a retry may have queued one again since) and the rows
    that name them; returns the runs deleted, and adds the object references their values
    held to `references`."""
    if not chosen:
        return []
    ids = json.dumps([r.id for r in chosen])
    returned = conn.execute(
        f"DELETE FROM runs WHERE id IN {_IDS} AND status IN ({_FINISHED}) RETURNING id, "
        f"{_ref('payload')}, {_ref('output')}, {_ref('metadata')}, {_ref('state')}",
        (ids,)).fetchall()
    gone = {r[0] for r in returned}
    references += [text for r in returned for text in r[1:] if text is not None]
    deleted = [r for r in chosen if r.id in gone]
    if not deleted:
        return []
    id_list = [r.id for r in deleted]
    ids = json.dumps(id_list)
    for sql in _DEPENDENTS:
        conn.execute(sql, (ids,))
    references += [r[0] for r in conn.execute(
        f"DELETE FROM steps WHERE run_id IN {_IDS} RETURNING {_ref('output')}", (ids,))
        if r[0] is not None]
    conn.executemany("DELETE FROM run_tags WHERE tag = ? AND run_id = ?", tag_pairs(deleted))
    # the tokens the runs created, unless a run still waits for one (migration 0015's index)
    references += [r[0] for r in conn.execute(
        f"DELETE FROM waitpoints WHERE run_id IN {_IDS} AND NOT EXISTS "
        "(SELECT 1 FROM runs w WHERE w.status = 'WAITING' AND w.waiting_for <> 'sleep' "
        "AND w.waiting_for = waitpoints.id) AND NOT EXISTS (SELECT 1 FROM wait_parts wp "
        f"WHERE wp.part = waitpoints.id) RETURNING {_ref('output')}", (ids,))
        if r[0] is not None]
    # the HTTP server's stored replies that name them: kept a day, stored (by the system
    # clock) when the runs were made, so only those made around the runs' ids are read
    made = [id_seconds(min(id_list)) or 0.0, id_seconds(max(id_list)) or 0.0]
    conn.execute(
        "DELETE FROM replies WHERE created_at >= ? AND created_at <= ? AND EXISTS "
        "(SELECT 1 FROM json_each(?) d WHERE instr(replies.body, d.value) > 0)",
        (min(made) - 60, max(made) + 60, ids))
    return deleted


class PurgeParts(SQLiteAccess):
    def _setting(self) -> str | None:
        row = self._read("SELECT value FROM settings WHERE name = ?", (CURSOR_SETTING,)).fetchone()
        return None if row is None else str(row[0])

    def has_work(self) -> bool:
        # each status through its partial index (runs_executing, runs_ready): runs_status
        # holds neither (migration 0025)
        row = self._read("SELECT EXISTS (SELECT 1 FROM runs INDEXED BY runs_executing"
                         " WHERE status = 'EXECUTING') OR EXISTS (SELECT 1 FROM runs"
                         " INDEXED BY runs_ready WHERE status IN ('QUEUED', 'DELAYED')"
                         " AND status = 'QUEUED')").fetchone()
        return bool(row[0])

    def purge_runs(self, rule: PurgeRule, after: str = "", limit: int = SCAN_ROWS,
                   dry_run: bool = False) -> PurgeBatch:
        if dry_run:
            return _walk(self._conn(), rule, after, limit)
        self._conn()
        with self.db.write() as conn:
            batch = _walk(conn, rule, after, limit)
            batch.runs = _delete(conn, batch.runs, batch.references)
        return batch

    def purge_due(self, rule: PurgeRule, now: float, pass_every: float,
                  limit: int = SCAN_ROWS) -> PurgeBatch | None:
        after, pass_at = read_cursor(self._setting())  # (a read: cheap)
        if not after and now < pass_at:
            return None
        self._conn()
        with self.db.write() as conn:  # the walk's place is read and moved under the lock
            row = conn.execute("SELECT value FROM settings WHERE name = ?",
                               (CURSOR_SETTING,)).fetchone()
            after, pass_at = read_cursor(None if row is None else str(row[0]))
            if not after and now < pass_at:
                return None
            batch = _walk(conn, rule, after, limit)
            batch.runs = _delete(conn, batch.runs, batch.references)
            value = (cursor_text(batch.next_after, 0.0) if batch.next_after is not None
                     else cursor_text("", now + pass_every))
            conn.execute("INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) "
                         "DO UPDATE SET value = excluded.value", (CURSOR_SETTING, value))
        return batch
