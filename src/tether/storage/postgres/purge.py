"""Retention on PostgreSQL: deleting finished runs with every row that names them, a batch per
short transaction (its row locks are held for milliseconds). The workers' walk is shared through
a settings row, moved under a transaction-scoped advisory lock: one worker at a time purges, the
others skip without waiting. A mixin of PostgresStorage; the rule is storage/retention.py's."""

from __future__ import annotations

import zlib

from psycopg.rows import tuple_row

from tether.clock import id_floor, id_seconds
from tether.storage.postgres.access import Conn, PgAccess
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
    without_children_of,
)

RETENTION_LOCK = 0x7E7E_0015  # with the schema's key: two deployments in one database don't wait


def lock_key(schema: str | None) -> tuple[int, int]:
    """The advisory lock's two int4 keys: Tether's retention, and this schema."""
    return RETENTION_LOCK, zlib.crc32((schema or "").encode()) - (1 << 31)
_FINISHED = sorted(FINISHED)
_WALK = ("SELECT id, task_id, status, finished_at, parent_id, created_at, tags FROM runs "
         "WHERE id > %s AND id < %s ORDER BY id LIMIT %s")
_LIKE = REFERENCE_LIKE.replace("%", "%%")  # (`%` doubled: the statement has parameters)


def _ref(column: str, alias: str = "") -> str:
    """The column's value when it is an object reference, else NULL."""
    return f"CASE WHEN {column} LIKE '{_LIKE}' THEN {column} END AS {alias or column.split('.')[-1]}"


_COLUMNS = ("payload", "output", "metadata", "state")
_STATUSES = ", ".join(f"'{status}'" for status in _FINISHED)
# One statement deletes a batch: the runs still finished (a retry may have queued one again
# since the walk read it) and every row that names them. The ids go as one comma-joined text
# (runs' ids have no commas), and what comes back is one row: the ids not deleted (usually
# none) and the object references the deleted values held. Tokens a run created go unless a
# run still waits for one (migration 0015's index); the HTTP server's stored replies naming
# the runs (kept a day, stored when the runs were made) are read only around the runs'
# creation times.
_DELETE = f"""
WITH gone AS (
    DELETE FROM runs WHERE id = ANY (string_to_array(%(ids)s, ','))
        AND status IN ({_STATUSES})
    RETURNING id, tags, {", ".join(_ref(c) for c in _COLUMNS)}),
attempts_gone AS (DELETE FROM attempts WHERE run_id IN (SELECT id FROM gone)),
events_gone AS (DELETE FROM events WHERE run_id IN (SELECT id FROM gone)),
items_gone AS (DELETE FROM batch_items WHERE run_id IN (SELECT id FROM gone)),
hooks_gone AS (DELETE FROM owed_hooks WHERE run_id IN (SELECT id FROM gone)),
parts_gone AS (DELETE FROM wait_parts WHERE run_id IN (SELECT id FROM gone)),
steps_gone AS (DELETE FROM steps WHERE run_id IN (SELECT id FROM gone)
    RETURNING {_ref("output")}),
tags_gone AS (DELETE FROM run_tags t
    USING gone g CROSS JOIN LATERAL jsonb_array_elements_text(g.tags::jsonb) AS e(tag)
    WHERE g.tags <> '[]' AND t.tag = e.tag AND t.run_id = g.id),
tokens_gone AS (DELETE FROM waitpoints p WHERE p.run_id IN (SELECT id FROM gone)
    AND NOT EXISTS (SELECT 1 FROM runs w WHERE w.status = 'WAITING'
                    AND w.waiting_for <> 'sleep' AND w.waiting_for = p.id)
    AND NOT EXISTS (SELECT 1 FROM wait_parts wp WHERE wp.part = p.id)
    RETURNING {_ref("p.output")}),
replies_gone AS (DELETE FROM replies r
    WHERE r.created_at >= %(made_from)s AND r.created_at <= %(made_to)s
      AND EXISTS (SELECT 1 FROM gone WHERE strpos(r.body, gone.id) > 0))
SELECT ARRAY(SELECT u FROM unnest(string_to_array(%(ids)s, ',')) AS u
             EXCEPT SELECT id FROM gone) AS kept,
       ARRAY(SELECT v FROM gone CROSS JOIN LATERAL unnest(ARRAY[{", ".join(_COLUMNS)}]) AS v
             WHERE v IS NOT NULL
             UNION ALL SELECT output FROM steps_gone WHERE output IS NOT NULL
             UNION ALL SELECT output FROM tokens_gone WHERE output IS NOT NULL) AS refs
"""


def _walk(conn: Conn, rule: PurgeRule, after: str, limit: int) -> PurgeBatch:
    horizon = rule.horizon()
    if horizon is None:
        return PurgeBatch([], None)
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = [Candidate._make(r) for r in cur.execute(
            _WALK, (after, id_floor("run", horizon), limit))]
    chosen = rule.select(rows)
    parents = sorted({r.parent_id for r in chosen if r.parent_id is not None})
    if parents:
        waiting = {r["id"] for r in conn.execute(
            "SELECT id FROM runs WHERE id = ANY (%s) AND NOT (status = ANY (%s))",
            (parents, _FINISHED))}
        chosen = without_children_of(chosen, waiting)
    return PurgeBatch(chosen, rows[-1].id if len(rows) == limit else None)


def _delete(conn: Conn, chosen: list[Candidate], references: list[str]) -> list[Candidate]:
    """Delete the runs (still finished) and the rows that name them; returns the runs deleted,
    and adds the object references their values held to `references`."""
    if not chosen:
        return []
    ids = [r.id for r in chosen]
    made = [id_seconds(min(ids)) or 0.0, id_seconds(max(ids)) or 0.0]
    row = conn.execute(_DELETE, {"ids": ",".join(ids), "made_from": min(made) - 60,
                                 "made_to": max(made) + 60}).fetchone()
    assert row is not None  # (an aggregate-free SELECT of two arrays: always one row)
    references += row["refs"]
    kept = set(row["kept"])
    return [r for r in chosen if r.id not in kept] if kept else chosen


class PurgeParts(PgAccess):
    def _setting(self) -> str | None:
        row = self._one("SELECT value FROM settings WHERE name = %s", (CURSOR_SETTING,))
        return None if row is None else str(row["value"])

    def has_work(self) -> bool:
        # each status through its partial index (runs_executing, runs_ready): runs_status
        # holds neither (migration 0025)
        row = self._one("SELECT EXISTS (SELECT 1 FROM runs WHERE status = 'EXECUTING')"
                        " OR EXISTS (SELECT 1 FROM runs WHERE status = 'QUEUED') AS busy")
        return bool(row is not None and row["busy"])

    def purge_runs(self, rule: PurgeRule, after: str = "", limit: int = SCAN_ROWS,
                   dry_run: bool = False) -> PurgeBatch:
        def work(conn: Conn) -> PurgeBatch:
            batch = _walk(conn, rule, after, limit)
            if not dry_run:
                batch.runs = _delete(conn, batch.runs, batch.references)
            return batch

        return self._tx(work)  # type: ignore[no-any-return]

    def purge_due(self, rule: PurgeRule, now: float, pass_every: float,
                  limit: int = SCAN_ROWS) -> PurgeBatch | None:
        after, pass_at = read_cursor(self._setting())  # (a read: cheap)
        if not after and now < pass_at:
            return None

        def work(conn: Conn) -> PurgeBatch | None:
            row = conn.execute("SELECT pg_try_advisory_xact_lock(%s, %s) AS taken",
                               lock_key(self.db.schema)).fetchone()
            if row is None or not row["taken"]:
                return None  # another worker purges now
            found = conn.execute("SELECT value FROM settings WHERE name = %s",
                                 (CURSOR_SETTING,)).fetchone()
            after, pass_at = read_cursor(None if found is None else str(found["value"]))
            if not after and now < pass_at:
                return None
            batch = _walk(conn, rule, after, limit)
            batch.runs = _delete(conn, batch.runs, batch.references)
            value = (cursor_text(batch.next_after, 0.0) if batch.next_after is not None
                     else cursor_text("", now + pass_every))
            conn.execute("INSERT INTO settings (name, value) VALUES (%s, %s) ON CONFLICT (name) "
                         "DO UPDATE SET value = excluded.value", (CURSOR_SETTING, value))
            return batch

        return self._tx(work)  # type: ignore[no-any-return]
