"""Owed failure hooks and the reads behind the server's alerts (PostgreSQL): a mixin of
PostgresStorage. Migration 0014_owed_hooks has the table and the trigger that fills it."""

from __future__ import annotations

from tether.storage.postgres.access import PgAccess


class AlertParts(PgAccess):
    def take_owed_hooks(self, task_ids: list[str], holder: str, now: float, hold: float,
                        limit: int = 20) -> list[str]:
        if not task_ids:
            return []
        rows = self._all(
            "UPDATE owed_hooks SET held_by = %s, held_until = %s WHERE run_id IN ("
            "SELECT run_id FROM owed_hooks WHERE task_id = ANY (%s) AND "
            "(held_until IS NULL OR held_until < %s) ORDER BY created_at, run_id LIMIT %s "
            "FOR UPDATE SKIP LOCKED) RETURNING run_id", (holder, now + hold, task_ids, now, limit))
        return [str(r["run_id"]) for r in rows]

    def settle_owed_hook(self, run_id: str, holder: str) -> None:
        self._run(lambda c: c.execute("DELETE FROM owed_hooks WHERE run_id = %s AND held_by = %s",
                                      (run_id, holder)))

    def owed_hooks(self) -> list[str]:
        return [str(r["run_id"]) for r in
                self._all("SELECT run_id FROM owed_hooks ORDER BY created_at, run_id")]

    def get_setting(self, name: str) -> str | None:
        row = self._one("SELECT value FROM settings WHERE name = %s", (name,))
        return None if row is None else str(row["value"])

    def put_setting(self, name: str, value: str) -> None:
        self._run(lambda c: c.execute(
            "INSERT INTO settings (name, value) VALUES (%s, %s) ON CONFLICT (name) "
            "DO UPDATE SET value = excluded.value", (name, value)))

    def failures_since(self, after: float, after_id: str = "",
                       limit: int = 200) -> list[tuple[float, str]]:
        rows = self._all("SELECT finished_at, id FROM runs WHERE status IN ('FAILED', "
                         "'TIMED_OUT') AND finished_at >= %s AND (finished_at > %s OR "
                          "id > %s) ORDER BY finished_at, id LIMIT %s",
                         (after, after, after_id, limit))
        return [(float(r["finished_at"]), str(r["id"])) for r in rows]

    def oldest_ready(self, now: float) -> dict[str, float]:
        rows = self._all("SELECT queue, min(available_at) AS oldest FROM runs "
                         "WHERE status = 'QUEUED' AND available_at <= %s GROUP BY queue", (now,))
        return {str(r["queue"]): float(r["oldest"]) for r in rows}
