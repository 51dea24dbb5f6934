"""Retention on PostgreSQL: deleting finished runs with every row that names them, a batch per
short transaction (its row locks are held for milliseconds). The workers' walk is shared through
a settings row, moved under a transaction-scoped advisory lock: one worker at a time purges, the
others skip without waiting. A mixin of PostgresStorage; the rule is storage/retention.py's."""

from __future__ import annotations

import zlib

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
    tag_pairs,
    without_children_of,
)

RETENTION_LOCK = 0x7E7E_0015  # with the schema's key: two deployments in one database don't wait


def lock_key(schema: str | None) -> tuple[int, int]:
    """The advisory lock's two int4 keys: Tether's retention, and this schema."""
    return RETENTION_LOCK, zlib.crc32((schema or "").encode()) - (1 << 31)
_FINISHED = sorted(FINISHED)
_WALK = ("SELECT id, task_id, status, finished_at, parent_id, created_at, tags FROM runs "
         "WHERE id > %s AND id < %s ORDER BY id LIMIT %s")
_DEPENDENTS = [f"DELETE FROM {table} WHERE run_id = ANY (%s)"
               for table in ("attempts", "events", "batch_items", "owed_hooks")]


def _ref(column: str, alias: str = "") -> str:
    """The column's value when it is an object reference, else NULL (`%` doubled: the
    statement has parameters)."""
    like = REFERENCE_LIKE.replace("%", "%%")
    return f"CASE WHEN {column} LIKE '{like}' THEN {column} END AS {alias or column}"


def _walk(conn: Conn, rule: PurgeRule, after: str, limit: int) -> PurgeBatch:
    horizon = rule.horizon()
    if horizon is None:
        return PurgeBatch([], None)
    rows = [Candidate(r["id"], r["task_id"], r["status"], r["finished_at"], r["parent_id"],
                      r["created_at"], r["tags"])
            for r in conn.execute(_WALK, (after, id_floor("run", horizon), limit))]
    chosen = rule.select(rows)
    parents = sorted({r.parent_id for r in chosen if r.parent_id is not None})
    if parents:
        waiting = {r["id"] for r in conn.execute(
            "SELECT id FROM runs WHERE id = ANY (%s) AND NOT (status = ANY (%s))",
            (parents, _FINISHED))}
        chosen = without_children_of(chosen, waiting)
    return PurgeBatch(chosen, rows[-1].id if len(rows) == limit else None)


def _delete(conn: Conn, chosen: list[Candidate], references: list[str]) -> list[Candidate]:
    """Delete the runs (still finished: a retry may have queued one again since) and the rows
    that name them; returns the runs deleted, and adds the object references their values
    held to `references`."""
    if not chosen:
        return []
    columns = ("payload", "output", "metadata", "state")
    returned = conn.execute(
        "DELETE FROM runs WHERE id = ANY (%s) AND status = ANY (%s) RETURNING id, "
        + ", ".join(_ref(c) for c in columns), ([r.id for r in chosen], _FINISHED)).fetchall()
    gone = {r["id"] for r in returned}
    references += [r[c] for r in returned for c in columns if r[c] is not None]
    deleted = [r for r in chosen if r.id in gone]
    if not deleted:
        return []
    ids = [r.id for r in deleted]
    for sql in _DEPENDENTS:
        conn.execute(sql, (ids,))
    references += [r["output"] for r in conn.execute(
        f"DELETE FROM steps WHERE run_id = ANY (%s) RETURNING {_ref('output')}", (ids,))
        if r["output"] is not None]
    pairs = tag_pairs(deleted)
    if pairs:
        conn.execute("DELETE FROM run_tags t USING unnest(%s::text[], %s::text[]) AS d(tag, run_id) "
                     "WHERE t.tag = d.tag AND t.run_id = d.run_id",
                     ([p[0] for p in pairs], [p[1] for p in pairs]))
    # the tokens the runs created, unless a run still waits for one (migration 0015's index)
    references += [r["output"] for r in conn.execute(
        "DELETE FROM waitpoints p WHERE p.run_id = ANY (%s) AND NOT EXISTS "
        "(SELECT 1 FROM runs w WHERE w.status = 'WAITING' AND w.waiting_for <> 'sleep' "
        f"AND w.waiting_for = p.id) RETURNING {_ref('p.output', 'output')}", (ids,))
        if r["output"] is not None]
    # the HTTP server's stored replies that name them: kept a day, stored (by the system
    # clock) when the runs were made, so only those made around the runs' ids are read
    made = [id_seconds(min(ids)) or 0.0, id_seconds(max(ids)) or 0.0]
    conn.execute(
        "DELETE FROM replies r WHERE r.created_at >= %s AND r.created_at <= %s AND EXISTS "
        "(SELECT 1 FROM unnest(%s::text[]) AS d(id) WHERE strpos(r.body, d.id) > 0)",
        (min(made) - 60, max(made) + 60, ids))
    return deleted


class PurgeParts(PgAccess):
    def _setting(self) -> str | None:
        row = self._one("SELECT value FROM settings WHERE name = %s", (CURSOR_SETTING,))
        return None if row is None else str(row["value"])

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
