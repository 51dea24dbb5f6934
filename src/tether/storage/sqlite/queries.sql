-- Named queries of the SQLite backend. Parameters are :named.

-- name: insert_run
-- a new run; with :gated set, nothing is stored for a run in a queue with a length limit or a
-- cancel_newest strategy (migration 0019): the caller then reads that queue's settings and
-- stores it again without :gated, under the same write lock (storage/flow.py)
INSERT INTO runs (id, task_id, queue, status, payload, metadata, tags, idempotency_key,
    idempotency_active, idempotency_expires_at, concurrency_key, priority, attempts, max_attempts,
    retry, max_duration, available_at, expires_at, parent_id, root_id, depth, resolves, created_at,
    updated_at, trace_context, rate_key)
SELECT :id, :task_id, :queue, :status, :payload, :metadata, :tags, :idempotency_key,
    :idempotency_active, :idempotency_expires_at, :concurrency_key, :priority, 0, :max_attempts,
    :retry, :max_duration, :available_at, :expires_at, :parent_id, :root_id, :depth, :resolves,
    :now, :now, :trace_context, :rate_key
WHERE NOT :gated OR NOT EXISTS (SELECT 1 FROM queues WHERE name = :queue
                                AND (max_queued IS NOT NULL OR on_key_limit = 'cancel_newest'))

-- name: debounce_run
-- a debounced trigger: a new DELAYED run, or the task's DELAYED run with this key pushed back
-- (taking the new payload in trailing mode); the caller compares the returned id with its own
INSERT INTO runs (id, task_id, queue, status, payload, metadata, tags, idempotency_key,
    idempotency_active, idempotency_expires_at, concurrency_key, priority, attempts, max_attempts,
    retry, max_duration, available_at, expires_at, parent_id, root_id, depth, resolves, created_at,
    updated_at, debounce_key, trace_context, rate_key)
VALUES (:id, :task_id, :queue, 'DELAYED', :payload, :metadata, :tags, :idempotency_key,
    :idempotency_active, :idempotency_expires_at, :concurrency_key, :priority, 0, :max_attempts,
    :retry, :max_duration, :available_at, :expires_at, :parent_id, :root_id, :depth, :resolves,
    :now, :now, :debounce_key, :trace_context, :rate_key)
ON CONFLICT (task_id, debounce_key) WHERE status = 'DELAYED' AND debounce_key IS NOT NULL
DO UPDATE SET
    available_at = CASE WHEN :debounce_max IS NULL THEN excluded.available_at
                        ELSE min(excluded.available_at, runs.created_at + :debounce_max) END,
    payload = CASE WHEN :debounce_trailing THEN excluded.payload ELSE runs.payload END,
    updated_at = excluded.updated_at
RETURNING *

-- name: find_idempotent
SELECT * FROM runs WHERE task_id = ? AND idempotency_key = ? AND idempotency_active = 1

-- name: release_idempotency_key
UPDATE runs SET idempotency_active = 0 WHERE id = ?

-- name: insert_tag
INSERT OR IGNORE INTO run_tags (tag, run_id) VALUES (?, ?)

-- name: insert_event
INSERT INTO events (run_id, at, kind, attempt, name, data) VALUES (?, ?, ?, ?, ?, ?)

-- name: get_run
SELECT * FROM runs WHERE id = ?

-- name: claim_update
-- followed by the list of run ids: "IN (?, ?, ...)"; one lease token serves the whole batch
-- (fencing checks the run id and the token together). in_line: 1 for runs held in line
-- (migration 0006), which no limit counts until they take over a place. A run coming back from a
-- wait (waiting_for set) goes on with its attempt: no new one is counted (migration 0007)
UPDATE runs SET status = 'EXECUTING', attempts = attempts + (waiting_for IS NULL), lease_token = ?,
    lease_expires_at = ?, worker_id = ?, updated_at = ?, attempt_started_at = ?,
    version = coalesce(version, ?),
    started_at = coalesce(started_at, ?), expires_at = NULL, error = NULL, in_line = ?
WHERE status IN ('QUEUED', 'DELAYED') AND id IN

-- name: take_place
-- a run held in line takes over the place of the attempt that ended before it; its attempt (and
-- the run, if it never ran) starts now: stored times never show more runs executing than a limit
UPDATE runs SET in_line = 0, attempt_started_at = :now, started_at = coalesce(started_at, :now),
    updated_at = :now
WHERE id = :run_id AND lease_token = :token AND status = 'EXECUTING' AND in_line = 1
  AND NOT EXISTS (SELECT 1 FROM paused_keys p WHERE p.queue = runs.queue
                  AND p.key = coalesce(runs.rate_key, runs.concurrency_key) AND p.until > :now)

-- name: next_ready_at
-- the next delayed run or wait due, or the next moment a queue's rate bucket that holds runs
-- back has room again
SELECT min(at) FROM (
    SELECT min(available_at) AS at FROM runs WHERE status IN ('QUEUED', 'DELAYED') AND available_at > ?1
    UNION ALL
    SELECT min(available_at) FROM runs WHERE status = 'WAITING'
    UNION ALL
    SELECT min(b.tat - (q.rate_burst - 1) * q.rate_period / q.rate_limit)
    FROM queues q JOIN rate_buckets b ON b.name = 'queue:' || q.name
    WHERE q.rate_limit IS NOT NULL AND b.tat - (q.rate_burst - 1) * q.rate_period / q.rate_limit > ?1
    UNION ALL
    SELECT min(until) FROM paused_keys WHERE until > ?1)

-- name: load_steps
SELECT key, name, kind, status, output, error, attempt, started_at, finished_at, seq
FROM steps WHERE run_id = ?

-- name: load_steps_many
SELECT run_id, key, name, kind, status, output, error, attempt, started_at, finished_at, seq
FROM steps WHERE run_id IN (SELECT value FROM json_each(?))

-- name: save_step
INSERT INTO steps (run_id, key, name, kind, status, output, error, attempt, started_at, finished_at,
    seq)
SELECT :run_id, :key, :name, :kind, :status, :output, :error, :attempt, :started_at, :finished_at,
    :seq
WHERE EXISTS (SELECT 1 FROM runs WHERE id = :run_id AND lease_token = :token)
ON CONFLICT (run_id, key) DO UPDATE SET status = excluded.status, output = excluded.output,
    error = excluded.error, attempt = excluded.attempt, started_at = excluded.started_at,
    finished_at = excluded.finished_at, seq = excluded.seq

-- name: save_state
UPDATE runs SET state = :state, updated_at = :now WHERE id = :run_id AND lease_token = :token

-- name: save_metadata
UPDATE runs SET metadata = :metadata, updated_at = :now WHERE id = :run_id AND lease_token = :token

-- name: check_lease
SELECT 1 FROM runs WHERE id = ? AND lease_token = ?

-- name: finish_run
UPDATE runs SET status = :to, output = coalesce(:output, output), error = :error,
    available_at = coalesce(:available_at, available_at), attempts = attempts - :refund,
    lease_token = NULL, lease_expires_at = NULL, worker_id = NULL, updated_at = :now,
    finished_at = CASE WHEN :final THEN :now ELSE NULL END, waiting_for = :waiting_for
WHERE id = :run_id AND lease_token = :token
  AND (:expired_before IS NULL OR lease_expires_at < :expired_before)
RETURNING *

-- name: wait_resolved
-- is what a run is about to wait for already done? (a token completed or timed out, or every
-- child of a group ended)
SELECT EXISTS (SELECT 1 FROM waitpoints WHERE id = :w AND status <> 'WAITING')
    OR (:w LIKE 'group%' AND NOT EXISTS (
        SELECT 1 FROM runs WHERE resolves = :w
          AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED')))

-- name: end_sleeps
-- a sleep is over once its run is queued again: the replay finds it done without writing
UPDATE steps SET status = 'COMPLETED', finished_at = ?
WHERE run_id = ? AND kind = 'sleep' AND status = 'WAITING'

-- name: resolved_waits
SELECT id FROM runs p WHERE status = 'WAITING' AND waiting_for <> 'sleep' AND (
    EXISTS (SELECT 1 FROM waitpoints w WHERE w.id = p.waiting_for AND w.status <> 'WAITING')
    OR (p.waiting_for LIKE 'group%' AND NOT EXISTS (
        SELECT 1 FROM runs c WHERE c.resolves = p.waiting_for
          AND c.status NOT IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED'))))

-- name: resume_run
UPDATE runs SET status = 'QUEUED', available_at = :now, updated_at = :now
WHERE id = :id AND status = 'WAITING' AND (:waiting_for IS NULL OR waiting_for = :waiting_for)
RETURNING id, attempts

-- name: insert_token
INSERT INTO waitpoints (id, run_id, status, output, timeout_at, idempotency_key, tags, created_at,
    completed_at, idempotency_expires_at, idempotency_active)
VALUES (:id, :run_id, :status, :output, :timeout_at, :idempotency_key, :tags, :created_at,
    :completed_at, :idempotency_expires_at, :idempotency_active)

-- name: get_token
SELECT * FROM waitpoints WHERE id = ?

-- name: find_token
SELECT * FROM waitpoints WHERE idempotency_key = ? AND idempotency_active = 1

-- name: release_token_key
UPDATE waitpoints SET idempotency_active = 0
WHERE idempotency_key = ? AND idempotency_active = 1 AND idempotency_expires_at <= ?

-- name: complete_token
UPDATE waitpoints SET status = 'COMPLETED', output = :output, completed_at = :now
WHERE id = :id AND status = 'WAITING' AND (timeout_at IS NULL OR timeout_at > :now)

-- name: time_out_token
UPDATE waitpoints SET status = 'TIMED_OUT', completed_at = :now
WHERE id = :id AND status = 'WAITING' AND timeout_at <= :now

-- name: token_waiters
SELECT id FROM runs WHERE status = 'WAITING' AND waiting_for = ? AND waiting_for <> 'sleep'

-- name: finish_attempt
INSERT INTO attempts (id, run_id, number, worker_id, status, started_at, finished_at, error,
    next_status, reason)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: renew_leases
-- followed by "(?, ?, ...)": the runs the worker executes
UPDATE runs SET lease_expires_at = ? WHERE worker_id = ? AND status = 'EXECUTING' AND id IN

-- name: touch_worker
UPDATE workers SET last_seen_at = ? WHERE id = ?

-- name: beat_worker
UPDATE workers SET last_seen_at = ?, running = ?, last_claim_at = ?, stalled_since = ?, stalls = ?
WHERE id = ?

-- name: mark_stalled
UPDATE workers SET stalled_since = ?, stalls = ? WHERE id = ?

-- name: expired_leases
SELECT * FROM runs WHERE status = 'EXECUTING' AND lease_expires_at < ?

-- name: expire_runs
UPDATE runs SET status = 'EXPIRED', updated_at = :now, finished_at = :now
WHERE expires_at IS NOT NULL AND expires_at <= :now AND status IN ('QUEUED', 'DELAYED')
RETURNING id, resolves IS NOT NULL

-- name: promote_delayed
-- (runs_status's own condition, as SQLite needs it to read that partial index: 0025)
UPDATE runs SET status = 'QUEUED', updated_at = :now
WHERE status NOT IN ('QUEUED', 'EXECUTING') AND status = 'DELAYED' AND available_at <= :now
RETURNING id

-- name: promote_waiting
-- sleeps that are over, and token waits whose timeout passed (the run raises WaitTimeout)
UPDATE runs SET status = 'QUEUED', updated_at = :now
WHERE status = 'WAITING' AND available_at <= :now
RETURNING id, attempts, waiting_for

-- name: list_attempts
SELECT * FROM attempts WHERE run_id = ? ORDER BY started_at, id

-- name: list_events
SELECT * FROM events WHERE run_id = ? ORDER BY id

-- name: copy_steps
-- a fork: the source run's durable calls before a position, with their positions (runs.fork)
INSERT INTO steps (run_id, key, name, kind, status, output, error, attempt, started_at, finished_at,
    seq)
SELECT ?, key, name, kind, status, output, error, attempt, started_at, finished_at, seq
FROM steps WHERE run_id = ? AND seq IS NOT NULL AND seq < ?

-- name: reset_once_steps
DELETE FROM steps WHERE run_id = ? AND kind = 'once' AND status = 'STARTED' RETURNING key

-- name: upsert_task
INSERT INTO tasks (id, queue, options, code_version, updated_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET queue = excluded.queue, options = excluded.options,
    code_version = excluded.code_version, updated_at = excluded.updated_at

-- name: upsert_queue
-- the newest registration of a queue wins (a deploy that changes its limits takes effect)
INSERT INTO queues (name, concurrency, rate_limit, rate_period, rate_burst, rate_scope,
    total_concurrency, max_queued, on_key_limit, paused, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)
ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency,
    rate_limit = excluded.rate_limit, rate_period = excluded.rate_period,
    rate_burst = excluded.rate_burst, rate_scope = excluded.rate_scope,
    total_concurrency = excluded.total_concurrency, max_queued = excluded.max_queued,
    on_key_limit = excluded.on_key_limit, updated_at = excluded.updated_at
WHERE concurrency IS NOT excluded.concurrency OR rate_limit IS NOT excluded.rate_limit
   OR rate_period IS NOT excluded.rate_period OR rate_burst IS NOT excluded.rate_burst
   OR rate_scope IS NOT excluded.rate_scope
   OR total_concurrency IS NOT excluded.total_concurrency
   OR max_queued IS NOT excluded.max_queued OR on_key_limit IS NOT excluded.on_key_limit

-- name: set_queue_paused
UPDATE queues SET paused = ?, updated_at = ? WHERE name = ?

-- name: get_task
SELECT * FROM tasks WHERE id = ?

-- name: list_tasks
SELECT * FROM tasks ORDER BY id

-- name: list_queues
SELECT name, concurrency, paused, rate_limit, rate_period, rate_burst, rate_scope,
    total_concurrency, max_queued, on_key_limit FROM queues ORDER BY name

-- name: register_worker
INSERT OR REPLACE INTO workers (id, hostname, pid, queues, concurrency, started_at, last_seen_at,
    stopped_at, version, tasks)
VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)

-- name: stop_worker
UPDATE workers SET stopped_at = ? WHERE id = ?

-- name: version_counts
-- each status through the partial index that holds only its runs, never the finished ones
SELECT version, status, count(*) FROM runs INDEXED BY runs_ready
WHERE status IN ('QUEUED', 'DELAYED') GROUP BY version, status
UNION ALL
SELECT version, status, count(*) FROM runs INDEXED BY runs_executing
WHERE status = 'EXECUTING' GROUP BY version, status
UNION ALL
SELECT version, status, count(*) FROM runs INDEXED BY runs_waiting
WHERE status = 'WAITING' GROUP BY version, status

-- name: list_workers
SELECT * FROM workers WHERE stopped_at IS NULL AND last_seen_at >= ? ORDER BY started_at

-- name: workers_seen
SELECT * FROM workers WHERE last_seen_at >= ? ORDER BY last_seen_at DESC, id DESC LIMIT ?

-- name: ready_since
SELECT task_id, queue, min(available_at) FROM runs INDEXED BY runs_ready
WHERE status IN ('QUEUED', 'DELAYED') AND status = 'QUEUED' AND available_at <= ?
GROUP BY task_id, queue

-- name: insert_part
-- a part of a gather (migration 0021), stored when the run parks on several waits at once
INSERT INTO wait_parts (wait, part, run_id, due_at) VALUES (:wait, :part, :run_id, :due_at)
ON CONFLICT (wait, part) DO UPDATE SET run_id = excluded.run_id, due_at = excluded.due_at

-- name: drop_run_parts
DELETE FROM wait_parts WHERE run_id = ?

-- name: gather_due
-- when a gather's run wakes by time: the latest due part (9999-12-31 while one waits only for
-- its event); :now when no part is left
SELECT coalesce(max(coalesce(due_at, 253402300799.0)), :now) FROM wait_parts WHERE wait = :wait

-- name: take_parts
DELETE FROM wait_parts WHERE part = ? RETURNING wait, run_id

-- name: settle_gather
UPDATE runs SET available_at = coalesce(
        (SELECT max(coalesce(w.due_at, 253402300799.0)) FROM wait_parts w WHERE w.wait = :wait),
        :now)
WHERE id = :id AND status = 'WAITING' AND waiting_for = :wait
RETURNING available_at

-- name: resolved_parts
-- parts whose event happened (a safety net: the event's own transaction deletes them)
SELECT DISTINCT part FROM wait_parts p WHERE
    EXISTS (SELECT 1 FROM waitpoints w WHERE w.id = p.part AND w.status <> 'WAITING')
    OR (p.part LIKE 'group%' AND NOT EXISTS (
        SELECT 1 FROM runs c WHERE c.resolves = p.part
          AND c.status NOT IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED')))

-- name: gather_waits_for
SELECT EXISTS (SELECT 1 FROM wait_parts p JOIN runs r ON r.id = p.run_id
               WHERE p.part = ? AND r.status = 'WAITING' AND r.waiting_for = p.wait)

-- name: drop_gathers
-- the parts left of gathers whose runs were queued (those over by time, or no longer waited for)
DELETE FROM wait_parts WHERE wait IN (SELECT value FROM json_each(?))
