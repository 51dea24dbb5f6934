-- Named queries of the PostgreSQL backend. Parameters are %(named)s or %s.

-- name: insert_run
INSERT INTO runs (id, task_id, queue, status, payload, metadata, tags, idempotency_key,
    idempotency_active, idempotency_expires_at, concurrency_key, priority, attempts, max_attempts,
    retry, max_duration, available_at, expires_at, parent_id, root_id, depth, resolves, created_at,
    updated_at, trace_context, rate_key)
VALUES (%(id)s, %(task_id)s, %(queue)s, %(status)s, %(payload)s, %(metadata)s, %(tags)s,
    %(idempotency_key)s, %(idempotency_active)s, %(idempotency_expires_at)s, %(concurrency_key)s,
    %(priority)s, 0, %(max_attempts)s, %(retry)s, %(max_duration)s, %(available_at)s,
    %(expires_at)s, %(parent_id)s, %(root_id)s, %(depth)s, %(resolves)s, %(now)s, %(now)s,
    %(trace_context)s, %(rate_key)s)
ON CONFLICT DO NOTHING

-- name: add_run
-- a run without an idempotency key, its tags, and the workers' wake-up: one statement, so a
-- single trigger is one round trip (an id conflict can only be this same run, stored by an
-- earlier try whose answer was lost)
WITH ins AS (
    INSERT INTO runs (id, task_id, queue, status, payload, metadata, tags, idempotency_key,
        idempotency_active, idempotency_expires_at, concurrency_key, priority, attempts,
        max_attempts, retry, max_duration, available_at, expires_at, parent_id, root_id, depth,
        resolves, created_at, updated_at, trace_context, rate_key)
    VALUES (%(id)s, %(task_id)s, %(queue)s, %(status)s, %(payload)s, %(metadata)s, %(tags)s,
        NULL, 0, NULL, %(concurrency_key)s, %(priority)s, 0, %(max_attempts)s, %(retry)s,
        %(max_duration)s, %(available_at)s, %(expires_at)s, %(parent_id)s, %(root_id)s,
        %(depth)s, %(resolves)s, %(now)s, %(now)s, %(trace_context)s, %(rate_key)s)
    ON CONFLICT DO NOTHING
    RETURNING id
), tagged AS (
    INSERT INTO run_tags (tag, run_id) SELECT t, %(id)s FROM unnest(%(tag_list)s::text[]) t
    ON CONFLICT DO NOTHING
)
-- (a run of a rate-limited queue wakes with "runs", not READY: a claim may hold it back, and the
-- workers then look again when its bucket has room)
SELECT pg_notify(%(channel)s, CASE WHEN %(wake)s = 'ready' AND EXISTS (
    SELECT 1 FROM queues q WHERE q.name = %(queue)s::text AND q.rate_limit IS NOT NULL)
    THEN 'runs' ELSE %(wake)s END) FROM ins

-- name: add_run_gated
-- add_run for a trigger: nothing is stored when the run's queue has a length limit or a
-- cancel_newest strategy (migration 0019): no row back, and the caller stores it in a
-- transaction that locks the queue (storage/flow.py)
WITH ins AS (
    INSERT INTO runs (id, task_id, queue, status, payload, metadata, tags, idempotency_key,
        idempotency_active, idempotency_expires_at, concurrency_key, priority, attempts,
        max_attempts, retry, max_duration, available_at, expires_at, parent_id, root_id, depth,
        resolves, created_at, updated_at, trace_context, rate_key)
    SELECT %(id)s::text, %(task_id)s::text, %(queue)s::text, %(status)s::text,
        %(payload)s::text, %(metadata)s::text, %(tags)s::text, NULL, 0, NULL,
        %(concurrency_key)s::text, %(priority)s::integer, 0, %(max_attempts)s::integer,
        %(retry)s::text, %(max_duration)s::double precision,
        %(available_at)s::double precision, %(expires_at)s::double precision,
        %(parent_id)s::text, %(root_id)s::text, %(depth)s::integer, %(resolves)s::text,
        %(now)s::double precision, %(now)s::double precision, %(trace_context)s::text,
        %(rate_key)s::text
    WHERE NOT EXISTS (SELECT 1 FROM queues WHERE name = %(queue)s::text
                      AND (max_queued IS NOT NULL OR on_key_limit = 'cancel_newest'))
    ON CONFLICT DO NOTHING
    RETURNING id
), tagged AS (
    INSERT INTO run_tags (tag, run_id) SELECT t, ins.id FROM ins, unnest(%(tag_list)s::text[]) t
    ON CONFLICT DO NOTHING
)
-- (a run of a rate-limited queue wakes with "runs", not READY: a claim may hold it back, and the
-- workers then look again when its bucket has room)
SELECT pg_notify(%(channel)s, CASE WHEN %(wake)s = 'ready' AND EXISTS (
    SELECT 1 FROM queues q WHERE q.name = %(queue)s::text AND q.rate_limit IS NOT NULL)
    THEN 'runs' ELSE %(wake)s END) FROM ins

-- name: add_run_offer
-- add_run_gated that also looks for an idle worker's offer (migration 0023; about 20 µs more of
-- the server's time, so a producer uses it only while offers are being taken: new_runs.py). A
-- run ready at once, in a queue without limits and not paused, takes an offer that fits: it is
-- stored claimed by that worker (as tether_claim_ready would claim it), and the message tells
-- the worker with the run's row (its id alone when the row is too long for a message)
WITH q AS (
    SELECT * FROM queues WHERE name = %(queue)s::text
), offer AS (
    DELETE FROM run_offers WHERE worker_id = (
        SELECT o.worker_id FROM run_offers o
        WHERE %(wake)s = 'ready' AND o.usable_until > %(now)s::double precision
          AND %(task_id)s::text = ANY (o.tasks)
          AND (o.queues IS NULL OR %(queue)s::text = ANY (o.queues))
          AND (%(expires_at)s::double precision IS NULL
               OR %(expires_at)s::double precision > %(now)s::double precision)
          AND NOT EXISTS (SELECT 1 FROM q WHERE paused <> 0 OR concurrency IS NOT NULL
              OR total_concurrency IS NOT NULL OR rate_limit IS NOT NULL
              OR max_queued IS NOT NULL OR on_key_limit = 'cancel_newest')
          AND NOT EXISTS (SELECT 1 FROM paused_keys p WHERE p.queue = %(queue)s::text
              AND p.key = coalesce(%(rate_key)s::text, %(concurrency_key)s::text)
              AND p.until > %(now)s::double precision)
        LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING worker_id, token, lease_until, version
), ins AS (
    INSERT INTO runs (id, task_id, queue, status, payload, metadata, tags, idempotency_key,
        idempotency_active, idempotency_expires_at, concurrency_key, priority, attempts,
        max_attempts, retry, max_duration, available_at, expires_at, parent_id, root_id, depth,
        resolves, created_at, updated_at, trace_context, rate_key, lease_token,
        lease_expires_at, worker_id, attempt_started_at, started_at, version)
    SELECT %(id)s::text, %(task_id)s::text, %(queue)s::text,
        CASE WHEN o.token IS NULL THEN %(status)s::text ELSE 'EXECUTING' END,
        %(payload)s::text, %(metadata)s::text, %(tags)s::text, NULL, 0, NULL,
        %(concurrency_key)s::text, %(priority)s::integer, (o.token IS NOT NULL)::int,
        %(max_attempts)s::integer, %(retry)s::text, %(max_duration)s::double precision,
        %(available_at)s::double precision,
        CASE WHEN o.token IS NULL THEN %(expires_at)s::double precision END,
        %(parent_id)s::text, %(root_id)s::text, %(depth)s::integer, %(resolves)s::text,
        %(now)s::double precision, %(now)s::double precision, %(trace_context)s::text,
        %(rate_key)s::text, o.token, o.lease_until, o.worker_id,
        CASE WHEN o.token IS NOT NULL THEN %(now)s::double precision END,
        CASE WHEN o.token IS NOT NULL THEN %(now)s::double precision END, o.version
    FROM (SELECT 1) one LEFT JOIN offer o ON true
    WHERE NOT EXISTS (SELECT 1 FROM q WHERE max_queued IS NOT NULL
                      OR on_key_limit = 'cancel_newest')
    ON CONFLICT DO NOTHING
    RETURNING *
), tagged AS (
    INSERT INTO run_tags (tag, run_id) SELECT t, ins.id FROM ins, unnest(%(tag_list)s::text[]) t
    ON CONFLICT DO NOTHING
)
-- (a run of a rate-limited queue wakes with "runs", not READY: a claim may hold it back, and the
-- workers then look again when its bucket has room)
SELECT pg_notify(%(channel)s, CASE
    WHEN ins.lease_token IS NOT NULL THEN 'took ' || ins.worker_id || ' ' || CASE
        WHEN octet_length(row_to_json(ins)::text) <= 7000 THEN row_to_json(ins)::text
        ELSE ins.id END
    WHEN %(wake)s = 'ready' AND EXISTS (SELECT 1 FROM q WHERE rate_limit IS NOT NULL)
    THEN 'runs' ELSE %(wake)s END), ins.lease_token IS NOT NULL AS took FROM ins

-- name: add_runs
-- many runs without idempotency keys (a batch), their tags, and one wake-up: one statement; the
-- runs come as one JSON array of objects, the tags as pairs
WITH ins AS (
    INSERT INTO runs (id, task_id, queue, status, payload, metadata, tags, idempotency_key,
        idempotency_active, idempotency_expires_at, concurrency_key, priority, attempts,
        max_attempts, retry, max_duration, available_at, expires_at, parent_id, root_id, depth,
        resolves, created_at, updated_at, trace_context, rate_key)
    SELECT n.id, n.task_id, n.queue, n.status, n.payload, n.metadata, n.tags, NULL, 0, NULL,
        n.concurrency_key, n.priority, 0, n.max_attempts, n.retry, n.max_duration,
        n.available_at, n.expires_at, n.parent_id, n.root_id, n.depth, n.resolves, %(now)s,
        %(now)s, n.trace_context, n.rate_key
    FROM json_to_recordset(%(runs)s::json) AS n (id text, task_id text, queue text, status text,
        payload text, metadata text, tags text, concurrency_key text, priority integer,
        max_attempts integer, retry text, max_duration double precision,
        available_at double precision, expires_at double precision, parent_id text,
        root_id text, depth integer, resolves text, trace_context text, rate_key text)
    ON CONFLICT DO NOTHING
    RETURNING id, queue
), tagged AS (
    INSERT INTO run_tags (tag, run_id)
    SELECT t.tag, t.run_id FROM json_to_recordset(%(run_tags)s::json) AS t (tag text, run_id text)
    ON CONFLICT DO NOTHING
)
-- (runs of a rate-limited queue wake with "runs", not READY: see add_run_gated)
SELECT pg_notify(%(channel)s, CASE WHEN %(wake)s = 'ready' AND EXISTS (
    SELECT 1 FROM queues q WHERE q.name IN (SELECT queue FROM ins) AND q.rate_limit IS NOT NULL)
    THEN 'runs' ELSE %(wake)s END)
WHERE EXISTS (SELECT 1 FROM ins)

-- name: debounce_run
-- a debounced trigger: a new DELAYED run, or the task's DELAYED run with this key pushed back
-- (taking the new payload in trailing mode); the caller compares the returned id with its own
INSERT INTO runs AS r (id, task_id, queue, status, payload, metadata, tags, idempotency_key,
    idempotency_active, idempotency_expires_at, concurrency_key, priority, attempts, max_attempts,
    retry, max_duration, available_at, expires_at, parent_id, root_id, depth, resolves, created_at,
    updated_at, debounce_key, trace_context, rate_key)
VALUES (%(id)s, %(task_id)s, %(queue)s, 'DELAYED', %(payload)s, %(metadata)s, %(tags)s,
    %(idempotency_key)s, %(idempotency_active)s, %(idempotency_expires_at)s, %(concurrency_key)s,
    %(priority)s, 0, %(max_attempts)s, %(retry)s, %(max_duration)s, %(available_at)s,
    %(expires_at)s, %(parent_id)s, %(root_id)s, %(depth)s, %(resolves)s, %(now)s, %(now)s,
    %(debounce_key)s, %(trace_context)s, %(rate_key)s)
ON CONFLICT (task_id, debounce_key) WHERE status = 'DELAYED' AND debounce_key IS NOT NULL
DO UPDATE SET
    available_at = CASE WHEN %(debounce_max)s::double precision IS NULL THEN excluded.available_at
                        ELSE least(excluded.available_at,
                                   r.created_at + %(debounce_max)s::double precision) END,
    payload = CASE WHEN %(debounce_trailing)s THEN excluded.payload ELSE r.payload END,
    updated_at = excluded.updated_at
RETURNING *

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
-- (tether_claim_ready, migration 0022: the first ready runs at once when no limit concerns them,
-- else tether_claim)
SELECT * FROM tether_claim_ready(%(worker)s, %(tasks)s::text[], %(queues)s::text[], %(limit)s,
    %(now)s, %(lease)s, %(token)s, %(relaxed)s, %(version)s::text, %(unpinned)s::text[])

-- name: claim_standby
-- Runs held in line by a worker for full limited queues in which it runs short attempts: claimed
-- like any run (EXECUTING, leased, an attempt counted) but without a slot. Each starts the moment
-- one of the worker's runs of that queue and key ends, and takes over its slot in the commit that
-- ends it (finish_runs' `successor`). Walks the ready index like tether_claim.
WITH want AS (
    SELECT * FROM unnest(%(queue)s::text[], %(key)s::text[], %(n)s::integer[])
        AS w (queue, concurrency_key, n)
    -- none for a rate-limited queue (a run in line would start outside the rate check), nor
    -- while a neighbouring key of the queue (the next one below or above in key order) has a
    -- ready run and none executing: it waits for its turn, which a line would keep taking
    WHERE NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = w.queue
                      AND (q.paused <> 0 OR q.rate_limit IS NOT NULL))
      AND NOT EXISTS (
          SELECT 1 FROM (
              (SELECT o.concurrency_key FROM runs o WHERE o.queue = w.queue
                 AND o.concurrency_key < w.concurrency_key AND o.status IN ('QUEUED', 'DELAYED')
                 AND o.available_at <= %(now)s ORDER BY o.concurrency_key DESC LIMIT 1)
              UNION ALL
              (SELECT o.concurrency_key FROM runs o WHERE o.queue = w.queue
                 AND o.concurrency_key > w.concurrency_key AND o.status IN ('QUEUED', 'DELAYED')
                 AND o.available_at <= %(now)s ORDER BY o.concurrency_key LIMIT 1)) n
          WHERE NOT EXISTS (SELECT 1 FROM runs e WHERE e.queue = w.queue
                            AND e.concurrency_key = n.concurrency_key AND e.status = 'EXECUTING'))
), picked AS (
    SELECT c.id FROM want w CROSS JOIN LATERAL (
        SELECT r.id FROM runs r
        WHERE r.status IN ('QUEUED', 'DELAYED') AND r.available_at <= %(now)s
          AND (r.expires_at IS NULL OR r.expires_at > %(now)s)
          AND r.task_id = ANY (%(tasks)s) AND r.queue = w.queue
          AND r.concurrency_key = w.concurrency_key
          AND NOT EXISTS (SELECT 1 FROM paused_keys p WHERE p.queue = r.queue
                          AND p.key = coalesce(r.rate_key, r.concurrency_key) AND p.until > %(now)s)
          AND (%(version)s::text IS NULL OR r.version IS NULL OR r.version = %(version)s
               OR r.task_id = ANY (%(unpinned)s::text[])
               OR NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = r.id))
        ORDER BY r.priority DESC, r.available_at, r.id
        LIMIT w.n
        FOR UPDATE OF r SKIP LOCKED) c
)
UPDATE runs SET status = 'EXECUTING', attempts = attempts + (waiting_for IS NULL)::int,
    lease_token = %(token)s,
    lease_expires_at = %(now)s + %(lease)s, worker_id = %(worker)s, updated_at = %(now)s,
    attempt_started_at = %(now)s, expires_at = NULL, error = NULL,
    version = coalesce(version, %(version)s)
WHERE id IN (SELECT id FROM picked) RETURNING *

-- name: notify
SELECT pg_notify(%s, %s)

-- name: next_ready_at
-- the next delayed run or wait due, or the next moment a queue's rate bucket that holds runs
-- back has room again
SELECT least(
    (SELECT min(available_at) FROM runs
     WHERE status IN ('QUEUED', 'DELAYED') AND available_at > %(now)s AND task_id = ANY (%(tasks)s)),
    (SELECT min(available_at) FROM runs WHERE status = 'WAITING'),
    (SELECT min(b.tat - (q.rate_burst - 1) * q.rate_period / q.rate_limit)
     FROM queues q JOIN rate_buckets b ON b.name = 'queue:' || q.name
     WHERE q.rate_limit IS NOT NULL
       AND b.tat - (q.rate_burst - 1) * q.rate_period / q.rate_limit > %(now)s),
    (SELECT min(until) FROM paused_keys WHERE until > %(now)s)) AS at

-- name: load_steps
SELECT key, name, kind, status, output, error, attempt, started_at, finished_at, seq
FROM steps WHERE run_id = %s

-- name: load_steps_many
SELECT run_id, key, name, kind, status, output, error, attempt, started_at, finished_at, seq
FROM steps WHERE run_id = ANY(%s)

-- name: save_step
INSERT INTO steps (run_id, key, name, kind, status, output, error, attempt, started_at, finished_at,
    seq)
SELECT %(run_id)s, %(key)s, %(name)s, %(kind)s, %(status)s, %(output)s, %(error)s, %(attempt)s,
    %(started_at)s, %(finished_at)s, %(seq)s
WHERE EXISTS (SELECT 1 FROM runs WHERE id = %(run_id)s AND lease_token = %(token)s)
ON CONFLICT (run_id, key) DO UPDATE SET status = excluded.status, output = excluded.output,
    error = excluded.error, attempt = excluded.attempt, started_at = excluded.started_at,
    finished_at = excluded.finished_at, seq = excluded.seq

-- name: save_step_relaxed
-- The result of an at-least-once `step`: committed without waiting for the WAL flush. Only a
-- crash of the PostgreSQL server itself can lose it, and then the step runs again, which
-- at-least-once allows; any later durable commit (the attempt's end) flushes it too.
WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))
INSERT INTO steps (run_id, key, name, kind, status, output, error, attempt, started_at, finished_at,
    seq)
SELECT %(run_id)s, %(key)s, %(name)s, %(kind)s, %(status)s, %(output)s, %(error)s, %(attempt)s,
    %(started_at)s, %(finished_at)s, %(seq)s
FROM relaxed
WHERE EXISTS (SELECT 1 FROM runs WHERE id = %(run_id)s AND lease_token = %(token)s)
ON CONFLICT (run_id, key) DO UPDATE SET status = excluded.status, output = excluded.output,
    error = excluded.error, attempt = excluded.attempt, started_at = excluded.started_at,
    finished_at = excluded.finished_at, seq = excluded.seq

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

-- name: generic_plans
-- For the rest of the transaction, run prepared statements with their generic plan. The server
-- otherwise plans the long hot-path statements again for each call (their parameters are arrays
-- it cannot judge), and planning the ending of attempts costs more than running it.
SELECT set_config('plan_cache_mode', 'force_generic_plan', true)

-- name: finish_runs
-- one round trip for any number of attempts that ended together: end each run's attempt (fenced
-- by its lease token), free its queue slot, record the attempt, store metadata and log lines,
-- and wake waiting callers and workers at commit
WITH raw AS (
    SELECT * FROM unnest(%(run_id)s::text[], %(token)s::text[], %(to)s::text[], %(output)s::text[],
        %(error)s::text[], %(available_at)s::float8[], %(refund)s::int[],
        %(final)s::bool[], %(attempt_id)s::text[], %(attempt)s::int[],
        %(worker_id)s::text[], %(outcome)s::text[], %(reason)s::text[], %(metadata)s::text[],
        %(waiting_for)s::text[], %(heir)s::text[], %(heir_token)s::text[],
        %(expiry)s::float8[])
        AS i (run_id, token, "to", output, error, available_at, refund, final, attempt_id,
              attempt, worker_id, outcome, reason, metadata, waiting_for, heir,
              heir_token, expiry)
), input AS (
    -- a run about to park on something already done goes straight back to the queue
    SELECT raw.*, raw.waiting_for IS NOT NULL AND (
        EXISTS (SELECT 1 FROM waitpoints w WHERE w.id = raw.waiting_for AND w.status <> 'WAITING')
        OR (raw.waiting_for LIKE 'group%%' AND NOT EXISTS (
            SELECT 1 FROM runs c WHERE c.resolves = raw.waiting_for
              AND c.status NOT IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED'))))
        AS resolved
    FROM raw
), locked AS (
    -- rows locked in id order, as renew_leases does: two statements of one worker (ending
    -- attempts, renewing leases) never wait on each other in a cycle. Successors are locked too:
    -- the values read here are their latest (a cancel that committed meanwhile is seen), and a
    -- cancel after this commit sees the slot it must free.
    SELECT id, status, lease_token FROM runs
    WHERE id IN (SELECT run_id FROM raw UNION SELECT heir FROM raw) ORDER BY id FOR UPDATE
), heirs AS (
    -- the slot of each ended attempt goes to its successor if that one still holds its lease
    SELECT i.run_id, l.id AS heir FROM input i JOIN locked l ON l.id = i.heir
    WHERE l.lease_token = i.heir_token AND l.status = 'EXECUTING'
      AND l.id NOT IN (SELECT run_id FROM raw)
      -- a paused key's run held in line does not take the place (it goes back to its queue)
      AND NOT tether_held(l.id, %(now)s)
), fin AS (
    UPDATE runs r SET status = CASE WHEN i.resolved THEN 'QUEUED' ELSE i."to" END,
        output = coalesce(i.output, r.output), error = i.error,
        metadata = coalesce(i.metadata, r.metadata),
        available_at = CASE WHEN i.resolved THEN %(now)s
                            ELSE coalesce(i.available_at, r.available_at) END,
        attempts = r.attempts - i.refund,
        lease_token = NULL, lease_expires_at = NULL, worker_id = NULL, updated_at = %(now)s,
        finished_at = CASE WHEN i.final THEN %(now)s ELSE NULL END,
        waiting_for = i.waiting_for
    FROM input i
    WHERE r.id = i.run_id AND r.lease_token = i.token AND r.id IN (SELECT id FROM locked)
      -- a takeover of an expired lease loses to a renewal that committed first
      AND (i.expiry IS NULL OR r.lease_expires_at < i.expiry)
    RETURNING r.*, i.final, i.attempt_id, i.attempt AS attempt_number, i.worker_id AS ended_by,
        i.outcome, i.reason
), slot AS (
    UPDATE queue_slots s SET run_id = h.heir, freed_at = %(now)s
    FROM fin LEFT JOIN heirs h ON h.run_id = fin.id
    WHERE s.run_id = fin.id
    RETURNING fin.id AS ended, h.heir
), started AS (
    -- a successor's attempt (and the run, if it never ran) starts now, not when it was taken in
    -- line: stored times never show more runs of a queue executing than its limit
    UPDATE runs SET attempt_started_at = %(now)s, started_at = coalesce(started_at, %(now)s),
        updated_at = %(now)s
    WHERE id IN (SELECT heir FROM slot)
), attempt AS (
    INSERT INTO attempts (id, run_id, number, worker_id, status, started_at, finished_at, error,
        next_status, reason)
    SELECT attempt_id, id, attempt_number, ended_by, outcome, coalesce(attempt_started_at, %(now)s),
        %(now)s, error, status, reason
    FROM fin
), logs AS (
    INSERT INTO events (run_id, at, kind, attempt, name, data)
    SELECT l.run_id, l.at, 'log', l.attempt, l.level, l.data
    FROM unnest(%(log_run_id)s::text[], %(log_at)s::float8[], %(log_attempt)s::int[],
                %(log_level)s::text[], %(log_data)s::text[]) AS l (run_id, at, attempt, level, data)
    WHERE l.run_id IN (SELECT id FROM fin)
), wait_steps AS (
    INSERT INTO steps (run_id, key, name, kind, status, output, error, attempt, started_at,
        finished_at, seq)
    SELECT * FROM unnest(%(step_run_id)s::text[], %(step_key)s::text[], %(step_name)s::text[],
        %(step_kind)s::text[], %(step_status)s::text[], %(step_output)s::text[],
        %(step_error)s::text[], %(step_attempt)s::int[],
        %(step_started_at)s::float8[], %(step_finished_at)s::float8[],
        %(step_seq)s::int[]) AS s (run_id, key, name, kind, status, output, error, attempt,
                                       started_at, finished_at, seq)
    WHERE s.run_id IN (SELECT id FROM fin)
    ON CONFLICT (run_id, key) DO UPDATE SET status = excluded.status, output = excluded.output,
        error = excluded.error, attempt = excluded.attempt, started_at = excluded.started_at,
        finished_at = excluded.finished_at, seq = excluded.seq
), done AS (
    SELECT tether_done(%(waiters)s, id, status, output) FROM fin WHERE final
)
-- `frees`: back in the queue, or its slot is free (the caller wakes other workers if its own
-- claim does not take the place); `handed_over`: its slot went to its successor
SELECT fin.*, (SELECT count(*) FROM done) AS notified,
    fin.id IN (SELECT ended FROM slot WHERE heir IS NOT NULL) AS handed_over,
    (fin.status = 'QUEUED' OR fin.id IN (SELECT ended FROM slot WHERE heir IS NULL)) AS frees
FROM fin

-- name: finish_plain
-- finish_runs for attempts whose ends are their transitions alone (no last writes, no wait, no
-- successor): the same changes, without the parts that would find nothing to do. Rows locked in
-- id order, as finish_runs and renew_leases lock them
WITH i AS (
    SELECT * FROM unnest(%(run_id)s::text[], %(token)s::text[], %(to)s::text[],
        %(output)s::text[], %(error)s::text[], %(available_at)s::float8[], %(refund)s::int[],
        %(final)s::bool[], %(attempt_id)s::text[], %(attempt)s::int[], %(worker_id)s::text[],
        %(outcome)s::text[], %(reason)s::text[], %(expiry)s::float8[])
        AS i (run_id, token, "to", output, error, available_at, refund, final, attempt_id,
              attempt, worker_id, outcome, reason, expiry)
), locked AS (
    SELECT id FROM runs WHERE id IN (SELECT run_id FROM i) ORDER BY id FOR UPDATE
), fin AS (
    UPDATE runs r SET status = i."to", output = coalesce(i.output, r.output), error = i.error,
        available_at = coalesce(i.available_at, r.available_at),
        attempts = r.attempts - i.refund, lease_token = NULL, lease_expires_at = NULL,
        worker_id = NULL, updated_at = %(now)s,
        finished_at = CASE WHEN i.final THEN %(now)s ELSE NULL END, waiting_for = NULL
    FROM i
    WHERE r.id = i.run_id AND r.lease_token = i.token AND r.id IN (SELECT id FROM locked)
      AND (i.expiry IS NULL OR r.lease_expires_at < i.expiry)
    RETURNING r.*, i.final, i.attempt_id, i.attempt AS attempt_number,
        i.worker_id AS ended_by, i.outcome, i.reason
), slot AS (
    UPDATE queue_slots s SET run_id = NULL, freed_at = %(now)s
    FROM fin WHERE s.run_id = fin.id
    RETURNING fin.id AS ended
), attempt AS (
    INSERT INTO attempts (id, run_id, number, worker_id, status, started_at, finished_at, error,
        next_status, reason)
    SELECT attempt_id, id, attempt_number, ended_by, outcome,
        coalesce(attempt_started_at, %(now)s), %(now)s, error, status, reason
    FROM fin
), done AS (
    SELECT tether_done(%(waiters)s, id, status, output) FROM fin WHERE final
)
SELECT fin.*, (SELECT count(*) FROM done) AS notified, false AS handed_over,
    (fin.status = 'QUEUED' OR fin.id IN (SELECT ended FROM slot)) AS frees
FROM fin

-- name: finish_one
-- finish_runs for a lone attempt whose end is its transition alone (no last writes, no wait, no
-- successor): the same changes, without the CTEs that would find nothing to do. One row, so no
-- lock order to keep
WITH fin AS (
    UPDATE runs r SET status = %(to)s, output = coalesce(%(output)s, r.output),
        error = %(error)s, available_at = coalesce(%(available_at)s, r.available_at),
        attempts = r.attempts - %(refund)s, lease_token = NULL, lease_expires_at = NULL,
        worker_id = NULL, updated_at = %(now)s,
        finished_at = CASE WHEN %(final)s THEN %(now)s ELSE NULL END, waiting_for = NULL
    WHERE r.id = %(run_id)s AND r.lease_token = %(token)s
      AND (%(expiry)s::float8 IS NULL OR r.lease_expires_at < %(expiry)s::float8)
    RETURNING r.*
), slot AS (
    UPDATE queue_slots s SET run_id = NULL, freed_at = %(now)s
    FROM fin WHERE s.run_id = fin.id
    RETURNING fin.id AS ended
), attempt AS (
    INSERT INTO attempts (id, run_id, number, worker_id, status, started_at, finished_at, error,
        next_status, reason)
    SELECT %(attempt_id)s, id, %(attempt)s, %(worker_id)s, %(outcome)s,
        coalesce(attempt_started_at, %(now)s), %(now)s, error, status, %(reason)s
    FROM fin
), done AS (
    SELECT tether_done(%(waiters)s, id, status, output) FROM fin WHERE %(final)s
)
SELECT fin.*, (SELECT count(*) FROM done) AS notified, false AS handed_over,
    (fin.status = 'QUEUED' OR EXISTS (SELECT 1 FROM slot)) AS frees
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

-- name: renew_leases_beat
WITH locked AS (
    SELECT id FROM runs WHERE id = ANY (%(run_ids)s) ORDER BY id FOR UPDATE
), renewed AS (
    UPDATE runs SET lease_expires_at = %(until)s
    WHERE worker_id = %(worker_id)s AND status = 'EXECUTING' AND id IN (SELECT id FROM locked)
    RETURNING id
), touched AS (
    UPDATE workers SET last_seen_at = %(now)s, running = %(running)s,
        last_claim_at = %(last_claim_at)s::double precision,
        stalled_since = %(stalled_since)s::double precision, stalls = %(stalls)s
    WHERE id = %(worker_id)s
)
SELECT id FROM renewed

-- name: expired_leases
SELECT * FROM runs WHERE status = 'EXECUTING' AND (lease_expires_at < %s OR worker_id = ANY (%s))

-- name: expire_runs
UPDATE runs SET status = 'EXPIRED', updated_at = %(now)s, finished_at = %(now)s
WHERE expires_at IS NOT NULL AND expires_at <= %(now)s AND status IN ('QUEUED', 'DELAYED')
RETURNING id, resolves IS NOT NULL AS is_child

-- name: promote_delayed
UPDATE runs SET status = 'QUEUED', updated_at = %(now)s
WHERE status = 'DELAYED' AND available_at <= %(now)s
RETURNING id

-- name: promote_waiting
-- sleeps that are over, and token waits whose timeout passed (the run raises WaitTimeout)
UPDATE runs SET status = 'QUEUED', updated_at = %(now)s
WHERE status = 'WAITING' AND available_at <= %(now)s
RETURNING id, attempts, waiting_for

-- name: end_sleeps
-- a sleep is over once its run is queued again: the replay finds it done without writing
UPDATE steps SET status = 'COMPLETED', finished_at = %s
WHERE run_id = ANY (%s) AND kind = 'sleep' AND status = 'WAITING'

-- name: resolved_waits
-- (read first; then again with FOR UPDATE SKIP LOCKED in the transaction that queues them)
SELECT id FROM runs p WHERE status = 'WAITING' AND waiting_for <> 'sleep' AND (
    EXISTS (SELECT 1 FROM waitpoints w WHERE w.id = p.waiting_for AND w.status <> 'WAITING')
    OR (p.waiting_for LIKE 'group%%' AND NOT EXISTS (
        SELECT 1 FROM runs c WHERE c.resolves = p.waiting_for
          AND c.status NOT IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED'))))

-- name: resume_run
UPDATE runs SET status = 'QUEUED', available_at = %(now)s, updated_at = %(now)s
WHERE id = %(id)s AND status = 'WAITING'
  AND (%(waiting_for)s::text IS NULL OR waiting_for = %(waiting_for)s::text)
RETURNING id, attempts

-- name: insert_token
INSERT INTO waitpoints (id, run_id, status, output, timeout_at, idempotency_key, tags, created_at,
    completed_at, idempotency_expires_at, idempotency_active)
VALUES (%(id)s, %(run_id)s, %(status)s, %(output)s, %(timeout_at)s, %(idempotency_key)s, %(tags)s,
    %(created_at)s, %(completed_at)s, %(idempotency_expires_at)s,
    %(idempotency_active)s)
ON CONFLICT DO NOTHING

-- name: get_token
SELECT * FROM waitpoints WHERE id = %s

-- name: find_token
SELECT * FROM waitpoints WHERE idempotency_key = %s AND idempotency_active = 1

-- name: release_token_key
UPDATE waitpoints SET idempotency_active = 0
WHERE idempotency_key = %s AND idempotency_active = 1 AND idempotency_expires_at <= %s

-- name: complete_token
UPDATE waitpoints SET status = 'COMPLETED', output = %(output)s, completed_at = %(now)s
WHERE id = %(id)s AND status = 'WAITING' AND (timeout_at IS NULL OR timeout_at > %(now)s)

-- name: time_out_token
UPDATE waitpoints SET status = 'TIMED_OUT', completed_at = %(now)s
WHERE id = %(id)s AND status = 'WAITING' AND timeout_at <= %(now)s

-- name: token_waiters
SELECT id FROM runs WHERE status = 'WAITING' AND waiting_for = %s AND waiting_for <> 'sleep'

-- name: list_attempts
SELECT * FROM attempts WHERE run_id = %s ORDER BY started_at, id

-- name: list_events
SELECT * FROM events WHERE run_id = %s ORDER BY id

-- name: copy_steps
-- a fork: the source run's durable calls before a position, with their positions (runs.fork)
INSERT INTO steps (run_id, key, name, kind, status, output, error, attempt, started_at, finished_at,
    seq)
SELECT %s, key, name, kind, status, output, error, attempt, started_at, finished_at, seq
FROM steps WHERE run_id = %s AND seq IS NOT NULL AND seq < %s

-- name: reset_once_steps
DELETE FROM steps WHERE run_id = %s AND kind = 'once' AND status = 'STARTED' RETURNING key

-- name: upsert_task
INSERT INTO tasks (id, queue, options, code_version, updated_at) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET queue = excluded.queue, options = excluded.options,
    code_version = excluded.code_version, updated_at = excluded.updated_at

-- name: upsert_queue
-- the newest registration of a queue wins (a deploy that changes its limits takes effect); a
-- queue whose settings changed starts its rate buckets afresh (a bucket filled under an old,
-- slower limit would hold runs back for the old limit's time)
WITH up AS (
INSERT INTO queues AS q (name, concurrency, rate_limit, rate_period, rate_burst, rate_scope,
    total_concurrency, max_queued, on_key_limit, paused, updated_at)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 0, %s)
ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency,
    rate_limit = excluded.rate_limit, rate_period = excluded.rate_period,
    rate_burst = excluded.rate_burst, rate_scope = excluded.rate_scope,
    total_concurrency = excluded.total_concurrency, max_queued = excluded.max_queued,
    on_key_limit = excluded.on_key_limit, updated_at = excluded.updated_at
WHERE (q.concurrency, q.rate_limit, q.rate_period, q.rate_burst, q.rate_scope,
       q.total_concurrency, q.max_queued, q.on_key_limit) IS DISTINCT FROM
      (excluded.concurrency, excluded.rate_limit, excluded.rate_period, excluded.rate_burst,
       excluded.rate_scope, excluded.total_concurrency, excluded.max_queued,
       excluded.on_key_limit)
RETURNING name
)
DELETE FROM rate_buckets WHERE name IN (SELECT 'queue:' || name FROM up)

-- name: set_queue_paused
UPDATE queues SET paused = %s, updated_at = %s WHERE name = %s

-- name: get_task
SELECT * FROM tasks WHERE id = %s

-- name: list_tasks
SELECT * FROM tasks ORDER BY id

-- name: list_queues
SELECT name, concurrency, paused, rate_limit, rate_period, rate_burst, rate_scope,
    total_concurrency, max_queued, on_key_limit FROM queues ORDER BY name

-- name: register_worker
INSERT INTO workers (id, hostname, pid, queues, concurrency, started_at, last_seen_at, stopped_at,
    version, tasks)
VALUES (%s, %s, %s, %s, %s, %s, %s, NULL, %s, %s)
ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at, stopped_at = NULL

-- name: stop_worker
UPDATE workers SET stopped_at = %s WHERE id = %s

-- name: version_counts
-- each status through the partial index that holds only its runs, never the finished ones
SELECT version, status, count(*) AS n FROM runs
WHERE status IN ('QUEUED', 'DELAYED') GROUP BY version, status
UNION ALL
SELECT version, status, count(*) FROM runs WHERE status = 'EXECUTING' GROUP BY version, status
UNION ALL
SELECT version, status, count(*) FROM runs WHERE status = 'WAITING' GROUP BY version, status

-- name: list_workers
SELECT * FROM workers WHERE stopped_at IS NULL AND last_seen_at >= %s ORDER BY started_at

-- name: workers_seen
SELECT * FROM workers WHERE last_seen_at >= %s ORDER BY last_seen_at DESC, id DESC LIMIT %s

-- name: mark_stalled
UPDATE workers SET stalled_since = %s::double precision, stalls = %s WHERE id = %s

-- name: ready_since
SELECT task_id, queue, min(available_at) AS oldest FROM runs
WHERE status = 'QUEUED' AND available_at <= %s GROUP BY task_id, queue

-- name: lock_part_tokens
-- the tokens a gather is about to wait for, locked (in id order) before its parts are stored:
-- a completion under way commits first (its token is then read as over, and no part stored),
-- or one that comes later waits for the park's commit and then sees its parts
SELECT id FROM waitpoints WHERE id = ANY (%s) ORDER BY id FOR SHARE

-- name: insert_part
-- a part of a gather (migration 0021), stored when the run parks on several waits at once,
-- unless it is over already
INSERT INTO wait_parts (wait, part, run_id, due_at)
SELECT %(wait)s, %(part)s, %(run_id)s, %(due_at)s::double precision
WHERE NOT (
    EXISTS (SELECT 1 FROM waitpoints w WHERE w.id = %(part)s AND w.status <> 'WAITING')
    OR (%(part)s LIKE 'group%%' AND NOT EXISTS (
        SELECT 1 FROM runs c WHERE c.resolves = %(part)s
          AND c.status NOT IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED'))))
ON CONFLICT (wait, part) DO UPDATE SET run_id = excluded.run_id, due_at = excluded.due_at

-- name: drop_run_parts
DELETE FROM wait_parts WHERE run_id = %s

-- name: lock_part_runs
-- the runs whose gathers wait for a part, locked (in id order) before their parts are decided
-- on: a run about to park commits its park before or after, never beside
SELECT p.wait, r.id, r.status, r.waiting_for FROM wait_parts p JOIN runs r ON r.id = p.run_id
WHERE p.part = %s ORDER BY r.id FOR UPDATE OF r

-- name: lock_parts_runs
SELECT r.id FROM runs r WHERE r.id IN (SELECT run_id FROM wait_parts WHERE part = ANY (%s))
ORDER BY r.id FOR UPDATE

-- name: take_part
DELETE FROM wait_parts WHERE wait = %s AND part = %s

-- name: settle_gather
UPDATE runs SET available_at = coalesce(
        (SELECT max(coalesce(w.due_at, 253402300799.0)) FROM wait_parts w WHERE w.wait = %(wait)s),
        %(now)s)
WHERE id = %(id)s AND status = 'WAITING' AND waiting_for = %(wait)s
RETURNING available_at

-- name: resolved_parts
-- parts whose event happened (a safety net: the event's own transaction deletes them)
SELECT DISTINCT part FROM wait_parts p WHERE
    EXISTS (SELECT 1 FROM waitpoints w WHERE w.id = p.part AND w.status <> 'WAITING')
    OR (p.part LIKE 'group%%' AND NOT EXISTS (
        SELECT 1 FROM runs c WHERE c.resolves = p.part
          AND c.status NOT IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED')))

-- name: resolved_parts_of
-- resolved_parts of some gathers only (those a finish has just parked)
SELECT DISTINCT part FROM wait_parts p WHERE p.wait = ANY (%s) AND (
    EXISTS (SELECT 1 FROM waitpoints w WHERE w.id = p.part AND w.status <> 'WAITING')
    OR (p.part LIKE 'group%%' AND NOT EXISTS (
        SELECT 1 FROM runs c WHERE c.resolves = p.part
          AND c.status NOT IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED'))))

-- name: gather_waits_for
SELECT EXISTS (SELECT 1 FROM wait_parts p JOIN runs r ON r.id = p.run_id
               WHERE p.part = %s AND r.status = 'WAITING' AND r.waiting_for = p.wait)

-- name: drop_gathers
-- the parts left of gathers whose runs were queued (those over by time, or no longer waited for)
DELETE FROM wait_parts WHERE wait = ANY (%s)

-- name: make_offer
-- an idle worker's offer (migration 0023), made anew or refreshed under a new token; offers
-- left by workers gone for a minute are dropped on the way (the table holds one row a worker).
-- Back come the runs that took this worker's earlier offers (`previous`): a run whose message
-- was lost (a listener's connection broke) is found here, at the worker's next poll.
-- Committed without waiting for the WAL flush: an offer lost with the server only means that
-- the next run is claimed instead (a trigger that takes it flushes it with its own commit)
WITH stale AS (
    DELETE FROM run_offers WHERE usable_until < %(now)s - 60 AND worker_id <> %(worker)s
), up AS (
    INSERT INTO run_offers (worker_id, token, tasks, queues, version, lease_until, usable_until)
    SELECT %(worker)s, %(token)s, %(tasks)s::text[], %(queues)s::text[], %(version)s,
           %(lease_until)s, %(usable_until)s
    FROM (SELECT set_config('synchronous_commit', 'off', true)) relaxed
    ON CONFLICT (worker_id) DO UPDATE SET token = excluded.token, tasks = excluded.tasks,
        queues = excluded.queues, version = excluded.version,
        lease_until = excluded.lease_until, usable_until = excluded.usable_until
)
SELECT * FROM runs WHERE status = 'EXECUTING' AND lease_token = ANY (%(previous)s::text[])
    AND worker_id = %(worker)s

-- name: offer_cte
-- (a part of finish_one, put in by offers.py: the offer made in the transaction of the ending that
-- leaves the worker with nothing to run, committed with it, so it is in place when the ending's
-- caller is told)
offer AS (
    INSERT INTO run_offers (worker_id, token, tasks, queues, version, lease_until, usable_until)
    VALUES (%(worker)s, %(offer_token)s, %(tasks)s::text[], %(queues)s::text[], %(version)s,
            %(lease_until)s, %(usable_until)s)
    ON CONFLICT (worker_id) DO UPDATE SET token = excluded.token, tasks = excluded.tasks,
        queues = excluded.queues, version = excluded.version,
        lease_until = excluded.lease_until, usable_until = excluded.usable_until
)

-- name: withdraw_offer
DELETE FROM run_offers WHERE worker_id = %s

-- name: offer_taken_by
SELECT * FROM runs WHERE status = 'EXECUTING' AND lease_token = ANY (%(tokens)s::text[])
    AND worker_id = %(worker)s
