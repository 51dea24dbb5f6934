-- Schedules (PostgreSQL). The SQLite twin is storage/sqlite/schedules.sql.

-- name: upsert
-- a new schedule, or an update of the one with the same deduplication key. The next slot stays
-- as it was unless the cron or timezone changed (a missed slot is still fired after a restart);
-- a schedule declared in code again after it was removed from the code becomes active again.
INSERT INTO schedules (id, task_id, cron, timezone, missed, external_id, deduplication_key,
    active, declared, next_run_at, last_run_at, created_at, updated_at)
VALUES (%(id)s, %(task_id)s, %(cron)s, %(timezone)s, %(missed)s, %(external_id)s,
    %(deduplication_key)s, 1, %(declared)s, %(next_run_at)s, NULL, %(now)s, %(now)s)
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
SELECT * FROM schedules WHERE id = %s

-- name: list
SELECT * FROM schedules ORDER BY task_id, created_at, id

-- name: delete
DELETE FROM schedules WHERE id = %s

-- name: set_active
UPDATE schedules SET active = %(active)s, next_run_at = %(next_run_at)s, updated_at = %(now)s
WHERE id = %(id)s RETURNING *

-- name: due
SELECT * FROM schedules WHERE active = 1 AND next_run_at <= %s ORDER BY next_run_at LIMIT %s

-- name: claim_slot
-- the compare-and-set that makes each slot fire once: a concurrent firer waits for the row lock,
-- then finds next_run_at moved on and changes nothing
UPDATE schedules SET next_run_at = %(next_run_at)s, updated_at = %(now)s,
    last_run_at = CASE WHEN %(fired)s THEN %(slot)s ELSE last_run_at END
WHERE id = %(id)s AND active = 1 AND next_run_at = %(due_at)s

-- name: retire_declared
-- declared schedules the code no longer declares
UPDATE schedules SET active = 0, declared = 0, next_run_at = NULL, updated_at = %s
WHERE declared = 1 AND NOT (deduplication_key = ANY (%s))
RETURNING id
