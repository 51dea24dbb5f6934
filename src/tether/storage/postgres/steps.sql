-- Statements of the step writer (storage/postgres/step_writer.py).

-- name: save_steps
-- The rows of any number of attempts in one statement, each row fenced by its attempt's lease
-- token; a key given twice keeps its last row (`n`: the order sent). Returns the leases whose
-- rows were refused (the run is no longer held by that token).
WITH given AS (
    SELECT * FROM unnest(%(run_id)s::text[], %(token)s::text[], %(key)s::text[],
        %(name)s::text[], %(kind)s::text[], %(status)s::text[], %(output)s::text[],
        %(error)s::text[], %(attempt)s::int[], %(started_at)s::float8[],
        %(finished_at)s::float8[], %(seq)s::int[], %(n)s::int[])
        AS g (run_id, token, key, name, kind, status, output, error, attempt, started_at,
              finished_at, seq, n)
), leases AS (
    SELECT DISTINCT run_id, token FROM given
), held AS (
    SELECT l.run_id, l.token FROM leases l JOIN runs r ON r.id = l.run_id AND r.lease_token = l.token
), saved AS (
    INSERT INTO steps (run_id, key, name, kind, status, output, error, attempt, started_at,
        finished_at, seq)
    SELECT DISTINCT ON (g.run_id, g.key) g.run_id, g.key, g.name, g.kind, g.status, g.output,
        g.error, g.attempt, g.started_at, g.finished_at, g.seq
    FROM given g JOIN held h ON h.run_id = g.run_id AND h.token = g.token
    ORDER BY g.run_id, g.key, g.n DESC
    ON CONFLICT (run_id, key) DO UPDATE SET status = excluded.status, output = excluded.output,
        error = excluded.error, attempt = excluded.attempt, started_at = excluded.started_at,
        finished_at = excluded.finished_at, seq = excluded.seq
    RETURNING 1
)
SELECT run_id, token FROM leases EXCEPT SELECT run_id, token FROM held

-- name: relaxed
-- The rest of this transaction commits without waiting for the WAL flush.
SELECT set_config('synchronous_commit', 'off', true)

-- name: durable
-- This transaction gets an id, so its commit writes a record and waits for the WAL flush: every
-- commit before it (the relaxed ones too) is on disk once it returns.
SELECT pg_current_xact_id()
