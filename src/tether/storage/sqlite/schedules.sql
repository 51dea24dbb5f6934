-- Schedules (SQLite). The PostgreSQL twin is storage/postgres/schedules.sql.

-- name: upsert
-- a new schedule, or an update of the one with the same deduplication key. The next slot stays
-- as it was unless the cron or timezone changed (a missed slot is still fired after a restart);
-- a schedule declared in code again after it was removed from the code becomes active again.
INSERT INTO schedules (id, task_id, cron, timezone, missed, external_id, deduplication_key,
    active, declared, next_run_at, last_run_at, created_at, updated_at)
VALUES (:id, :task_id, :cron, :timezone, :missed, :external_id, :deduplication_key, 1,
    :declared, :next_run_at, NULL, :now, :now)
ON CONFLICT (deduplication_key) DO UPDATE SET
    task_id = excluded.task_id, cron = excluded.cron, timezone = excluded.timezone,
    missed = excluded.missed, external_id = excluded.external_id,
    active = CASE WHEN excluded.declared = 1 AND schedules.declared = 0 THEN 1
                  ELSE schedules.active END,
    next_run_at = CASE
        WHEN excluded.declared = 1 AND schedules.declared = 0 THEN excluded.next_run_at
        WHEN schedules.active = 0 THEN NULL
        WHEN schedules.cron = excluded.cron AND schedules.timezone = excluded.timezone
            THEN schedules.next_run_at
        ELSE excluded.next_run_at END,
    declared = excluded.declared, updated_at = excluded.updated_at
RETURNING *

-- name: get
SELECT * FROM schedules WHERE id = ?

-- name: list
SELECT * FROM schedules ORDER BY task_id, created_at, id

-- name: delete
DELETE FROM schedules WHERE id = ?

-- name: set_active
UPDATE schedules SET active = :active, next_run_at = :next_run_at, updated_at = :now
WHERE id = :id RETURNING *

-- name: due
SELECT * FROM schedules WHERE active = 1 AND next_run_at <= ? ORDER BY next_run_at LIMIT ?

-- name: claim_slot
-- the compare-and-set that makes each slot fire once: only the firer that still sees the slot
-- it read moves the schedule on
UPDATE schedules SET next_run_at = :next_run_at, updated_at = :now,
    last_run_at = CASE WHEN :fired THEN :slot ELSE last_run_at END
WHERE id = :id AND active = 1 AND next_run_at = :due_at

-- name: retire_declared
-- declared schedules the code no longer declares (the placeholder list is filled in by Python)
UPDATE schedules SET active = 0, declared = 0, next_run_at = NULL, updated_at = ?
WHERE declared = 1 AND deduplication_key NOT IN
