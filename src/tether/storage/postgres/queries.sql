-- Named queries of the PostgreSQL backend. Parameters are %(named)s or %s.

-- name: insert_run
INSERT INTO runs (id, task_id, queue, status, payload, metadata, tags, idempotency_key,
    idempotency_active, idempotency_expires_at, concurrency_key, priority, attempts, max_attempts,
    retry, max_duration, available_at, expires_at, parent_id, root_id, depth, created_at, updated_at)
VALUES (%(id)s, %(task_id)s, %(queue)s, %(status)s, %(payload)s, %(metadata)s, %(tags)s,
    %(idempotency_key)s, %(idempotency_active)s, %(idempotency_expires_at)s, %(concurrency_key)s,
    %(priority)s, 0, %(max_attempts)s, %(retry)s, %(max_duration)s, %(available_at)s,
    %(expires_at)s, %(parent_id)s, %(root_id)s, %(depth)s, %(now)s, %(now)s)
ON CONFLICT DO NOTHING

-- name: add_run
-- a run without an idempotency key, its tags, and the workers' wake-up: one statement, so a
-- single trigger is one round trip (an id conflict can only be this same run, stored by an
-- earlier try whose answer was lost)
WITH ins AS (
    INSERT INTO runs (id, task_id, queue, status, payload, metadata, tags, idempotency_key,
        idempotency_active, idempotency_expires_at, concurrency_key, priority, attempts,
        max_attempts, retry, max_duration, available_at, expires_at, parent_id, root_id, depth,
        created_at, updated_at)
    VALUES (%(id)s, %(task_id)s, %(queue)s, %(status)s, %(payload)s, %(metadata)s, %(tags)s,
        NULL, 0, NULL, %(concurrency_key)s, %(priority)s, 0, %(max_attempts)s, %(retry)s,
        %(max_duration)s, %(available_at)s, %(expires_at)s, %(parent_id)s, %(root_id)s,
        %(depth)s, %(now)s, %(now)s)
    ON CONFLICT DO NOTHING
    RETURNING id
), tagged AS (
    INSERT INTO run_tags (tag, run_id) SELECT t, %(id)s FROM unnest(%(tag_list)s::text[]) t
    ON CONFLICT DO NOTHING
)
SELECT pg_notify(%(channel)s, 'runs') FROM ins

-- name: find_idempotent
SELECT * FROM runs WHERE task_id = %s AND idempotency_key = %s AND idempotency_active = 1

-- name: release_idempotency_key
UPDATE runs SET idempotency_active = 0 WHERE id = %s

-- name: insert_tag
INSERT INTO run_tags (tag, run_id) VALUES (%s, %s) ON CONFLICT DO NOTHING

-- name: insert_event
INSERT INTO events (run_id, at, kind, attempt, name, data) VALUES (%s, %s, %s, %s, %s, %s)

-- name: get_run
SELECT * FROM runs WHERE id = %s

-- name: claim
SELECT * FROM tether_claim(%s, %s, %s, %s, %s, %s, %s, %s)

-- name: notify
SELECT pg_notify(%s, %s)

-- name: next_ready_at
SELECT min(available_at) AS at FROM runs
WHERE status IN ('QUEUED', 'DELAYED') AND available_at > %s AND task_id = ANY (%s)

-- name: load_steps
SELECT key, name, kind, status, output, error, attempt, started_at, finished_at
FROM steps WHERE run_id = %s

-- name: save_step
INSERT INTO steps (run_id, key, name, kind, status, output, error, attempt, started_at, finished_at)
SELECT %(run_id)s, %(key)s, %(name)s, %(kind)s, %(status)s, %(output)s, %(error)s, %(attempt)s,
    %(started_at)s, %(finished_at)s
WHERE EXISTS (SELECT 1 FROM runs WHERE id = %(run_id)s AND lease_token = %(token)s)
ON CONFLICT (run_id, key) DO UPDATE SET status = excluded.status, output = excluded.output,
    error = excluded.error, attempt = excluded.attempt, started_at = excluded.started_at,
    finished_at = excluded.finished_at

-- name: save_step_relaxed
-- The result of an at-least-once `step`: committed without waiting for the WAL flush. Only a
-- crash of the PostgreSQL server itself can lose it, and then the step runs again, which
-- at-least-once allows; any later durable commit (the attempt's end) flushes it too.
WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))
INSERT INTO steps (run_id, key, name, kind, status, output, error, attempt, started_at, finished_at)
SELECT %(run_id)s, %(key)s, %(name)s, %(kind)s, %(status)s, %(output)s, %(error)s, %(attempt)s,
    %(started_at)s, %(finished_at)s
FROM relaxed
WHERE EXISTS (SELECT 1 FROM runs WHERE id = %(run_id)s AND lease_token = %(token)s)
ON CONFLICT (run_id, key) DO UPDATE SET status = excluded.status, output = excluded.output,
    error = excluded.error, attempt = excluded.attempt, started_at = excluded.started_at,
    finished_at = excluded.finished_at

-- name: save_state
UPDATE runs SET state = %(state)s, updated_at = %(now)s
WHERE id = %(run_id)s AND lease_token = %(token)s

-- name: save_metadata
UPDATE runs SET metadata = %(metadata)s, updated_at = %(now)s
WHERE id = %(run_id)s AND lease_token = %(token)s

-- name: insert_log
INSERT INTO events (run_id, at, kind, attempt, name, data)
SELECT %(run_id)s, %(at)s, 'log', %(attempt)s, %(level)s, %(data)s
WHERE EXISTS (SELECT 1 FROM runs WHERE id = %(run_id)s AND lease_token = %(token)s)

-- name: check_lease
SELECT 1 FROM runs WHERE id = %s AND lease_token = %s

-- name: finish_runs
-- one round trip for any number of attempts that ended together: end each run's attempt (fenced
-- by its lease token), free its queue slot, record the attempt, store metadata and log lines,
-- and wake waiting callers and workers at commit
WITH input AS (
    SELECT * FROM unnest(%(run_id)s::text[], %(token)s::text[], %(to)s::text[], %(output)s::text[],
        %(error)s::text[], %(available_at)s::double precision[], %(refund)s::integer[],
        %(final)s::boolean[], %(attempt_id)s::text[], %(attempt)s::integer[],
        %(worker_id)s::text[], %(outcome)s::text[], %(reason)s::text[], %(metadata)s::text[])
        AS i (run_id, token, "to", output, error, available_at, refund, final, attempt_id,
              attempt, worker_id, outcome, reason, metadata)
), locked AS (
    -- rows locked in id order, as renew_leases does: two statements of one worker (ending
    -- attempts, renewing leases) never wait on each other in a cycle
    SELECT r.id FROM runs r JOIN input i ON r.id = i.run_id ORDER BY r.id FOR UPDATE OF r
), fin AS (
    UPDATE runs r SET status = i."to", output = coalesce(i.output, r.output), error = i.error,
        metadata = coalesce(i.metadata, r.metadata),
        available_at = coalesce(i.available_at, r.available_at), attempts = r.attempts - i.refund,
        lease_token = NULL, lease_expires_at = NULL, worker_id = NULL, updated_at = %(now)s,
        finished_at = CASE WHEN i.final THEN %(now)s ELSE NULL END
    FROM input i
    WHERE r.id = i.run_id AND r.lease_token = i.token AND r.id IN (SELECT id FROM locked)
    RETURNING r.*, i.final, i.attempt_id, i.attempt AS attempt_number, i.worker_id AS ended_by,
        i.outcome, i.reason, r.attempt_started_at AS attempt_started
), slot AS (
    UPDATE queue_slots SET run_id = NULL WHERE run_id IN (SELECT id FROM fin)
), attempt AS (
    INSERT INTO attempts (id, run_id, number, worker_id, status, started_at, finished_at, error,
        next_status, reason)
    SELECT attempt_id, id, attempt_number, ended_by, outcome, coalesce(attempt_started, %(now)s),
        %(now)s, error, status, reason
    FROM fin
), logs AS (
    INSERT INTO events (run_id, at, kind, attempt, name, data)
    SELECT l.run_id, l.at, 'log', l.attempt, l.level, l.data
    FROM unnest(%(log_run_id)s::text[], %(log_at)s::double precision[], %(log_attempt)s::integer[],
                %(log_level)s::text[], %(log_data)s::text[]) AS l (run_id, at, attempt, level, data)
    WHERE l.run_id IN (SELECT id FROM fin)
), done AS (
    SELECT pg_notify(%(waiters)s, 'done ' || id) FROM fin WHERE final
)
-- `frees`: back in the queue, or a slot of a limited queue is free (the caller wakes other
-- workers if its own claim does not take the place)
SELECT fin.*, (SELECT count(*) FROM done) AS notified,
    (fin.status = 'QUEUED' OR EXISTS (SELECT 1 FROM queues q WHERE q.name = fin.queue
                                      AND q.concurrency IS NOT NULL)) AS frees
FROM fin

-- name: renew_leases
WITH locked AS (
    SELECT id FROM runs WHERE id = ANY (%(run_ids)s) ORDER BY id FOR UPDATE
), renewed AS (
    UPDATE runs SET lease_expires_at = %(until)s
    WHERE worker_id = %(worker_id)s AND status = 'EXECUTING' AND id IN (SELECT id FROM locked)
    RETURNING id
), touched AS (
    UPDATE workers SET last_seen_at = %(now)s WHERE id = %(worker_id)s
)
SELECT id FROM renewed

-- name: expired_leases
SELECT * FROM runs WHERE status = 'EXECUTING' AND (lease_expires_at < %s OR worker_id = ANY (%s))

-- name: expire_runs
UPDATE runs SET status = 'EXPIRED', updated_at = %(now)s, finished_at = %(now)s
WHERE expires_at IS NOT NULL AND expires_at <= %(now)s AND status IN ('QUEUED', 'DELAYED')
RETURNING id

-- name: promote_delayed
UPDATE runs SET status = 'QUEUED', updated_at = %(now)s
WHERE status = 'DELAYED' AND available_at <= %(now)s
RETURNING id

-- name: list_attempts
SELECT * FROM attempts WHERE run_id = %s ORDER BY started_at, id

-- name: list_events
SELECT * FROM events WHERE run_id = %s ORDER BY id

-- name: reset_once_steps
DELETE FROM steps WHERE run_id = %s AND kind = 'once' AND status = 'STARTED' RETURNING key

-- name: upsert_task
INSERT INTO tasks (id, queue, options, code_version, updated_at) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET queue = excluded.queue, options = excluded.options,
    code_version = excluded.code_version, updated_at = excluded.updated_at

-- name: upsert_queue
INSERT INTO queues AS q (name, concurrency, paused, updated_at) VALUES (%s, %s, 0, %s)
ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency, updated_at = excluded.updated_at
WHERE q.concurrency IS DISTINCT FROM excluded.concurrency

-- name: set_queue_paused
UPDATE queues SET paused = %s, updated_at = %s WHERE name = %s

-- name: get_task
SELECT * FROM tasks WHERE id = %s

-- name: list_tasks
SELECT * FROM tasks ORDER BY id

-- name: list_queues
SELECT name, concurrency, paused FROM queues ORDER BY name

-- name: register_worker
INSERT INTO workers (id, hostname, pid, queues, concurrency, started_at, last_seen_at, stopped_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, NULL)
ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at, stopped_at = NULL

-- name: stop_worker
UPDATE workers SET stopped_at = %s WHERE id = %s

-- name: list_workers
SELECT * FROM workers WHERE stopped_at IS NULL AND last_seen_at >= %s ORDER BY started_at
