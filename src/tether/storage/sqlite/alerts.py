"""Owed failure hooks and the reads behind the server's alerts (SQLite): a mixin of
SQLiteStorage. Migration 0014_owed_hooks has the table and the trigger that fills it."""

from __future__ import annotations

from tether.storage.sqlite.access import SQLiteAccess


class AlertParts(SQLiteAccess):
    def take_owed_hooks(self, task_ids: list[str], holder: str, now: float, hold: float,
                        limit: int = 20) -> list[str]:
        if not task_ids:
            return []
        marks = ",".join("?" * len(task_ids))
        self._conn()
        with self.db.write() as conn:
            rows = conn.execute(
                f"UPDATE owed_hooks SET held_by = ?, held_until = ? WHERE run_id IN ("
                f"SELECT run_id FROM owed_hooks WHERE task_id IN ({marks}) AND "
                f"(held_until IS NULL OR held_until < ?) ORDER BY created_at, run_id LIMIT ?) "
                f"RETURNING run_id", (holder, now + hold, *task_ids, now, limit)).fetchall()
        return [r[0] for r in rows]

    def settle_owed_hook(self, run_id: str, holder: str) -> None:
        self._write_one("DELETE FROM owed_hooks WHERE run_id = ? AND held_by = ?",
                        (run_id, holder))

    def owed_hooks(self) -> list[str]:
        return [r[0] for r in self._read("SELECT run_id FROM owed_hooks ORDER BY created_at, run_id")]

    def get_setting(self, name: str) -> str | None:
        row = self._read("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def put_setting(self, name: str, value: str) -> None:
        self._write_one("INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) "
                        "DO UPDATE SET value = excluded.value", (name, value))

    def failures_since(self, after: float, after_id: str = "",
                       limit: int = 200) -> list[tuple[float, str]]:
        rows = self._read("SELECT finished_at, id FROM runs WHERE status IN ('FAILED', "
                          "'TIMED_OUT') AND finished_at >= ? AND (finished_at > ? OR "
                          "id > ?) ORDER BY finished_at, id LIMIT ?",
                          (after, after, after_id, limit))
        return [(float(r[0]), str(r[1])) for r in rows]

    def oldest_ready(self, now: float) -> dict[str, float]:
        # (runs_ready's own condition, as SQLite needs it to read that partial index)
        rows = self._read("SELECT queue, min(available_at) FROM runs INDEXED BY runs_ready"
                          " WHERE status IN ('QUEUED', 'DELAYED') AND status = 'QUEUED'"
                          " AND available_at <= ? GROUP BY queue", (now,))
        return {str(r[0]): float(r[1]) for r in rows}
