-- Back-pressure (issue 22): a queue's key paused in paused_keys (RetryAfter, a 429/503 with
-- Retry-After, or by hand) until `until` is claimed by no claim: tether_claim below (as 0009's,
-- plus the paused keys), claim_standby and finish_runs' hand-over to a run held in line
-- (queries.sql; tether_held below). The key of a run is coalesce(rate_key, concurrency_key).
-- An index for the pauses' ends (the workers' next wake-up, deleting the ended ones).
CREATE INDEX paused_keys_until ON paused_keys (until);

-- whether a run's key is paused at p_now (finish_runs: a run held in line of a paused key does
-- not take over a place)
CREATE FUNCTION tether_held(p_run text, p_now double precision) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM runs r JOIN paused_keys p ON p.queue = r.queue
                   AND p.key = coalesce(r.rate_key, r.concurrency_key)
                   WHERE r.id = p_run AND p.until > p_now)
$$;
CREATE OR REPLACE FUNCTION tether_claim(p_worker text, p_tasks text[], p_queues text[],
                                        p_limit integer, p_now double precision,
                                        p_lease double precision, p_token text,
                                        p_relaxed boolean, p_version text,
                                        p_unpinned text[])
RETURNS SETOF runs LANGUAGE plpgsql
SET enable_seqscan = off SET enable_sort = off SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    cand record;
    got integer;
    freed double precision;
    p_start double precision := p_now;
    full_keys text[];
    paused_keys_now text[];
    picked text[] := '{}';
BEGIN
    IF p_relaxed THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    SELECT coalesce(array_agg(k), '{}') INTO full_keys FROM (
        SELECT s.queue || chr(31) || s.concurrency_key AS k
        FROM queue_slots s JOIN queues q ON q.name = s.queue
        WHERE s.slot <= q.concurrency
        GROUP BY s.queue, s.concurrency_key, q.concurrency
        HAVING count(*) FILTER (WHERE s.run_id IS NULL) = 0 AND count(*) >= q.concurrency) f;
    -- keys paused by back-pressure (an empty table: one index probe, and no test per run)
    SELECT coalesce(array_agg(p.queue || chr(31) || p.key), '{}') INTO paused_keys_now
    FROM paused_keys p WHERE p.until > p_now;
    FOR cand IN
        SELECT r.id, r.queue, r.concurrency_key, q.concurrency
        FROM runs r LEFT JOIN queues q ON q.name = r.queue
        WHERE r.status IN ('QUEUED', 'DELAYED') AND r.available_at <= p_now
          AND (r.expires_at IS NULL OR r.expires_at > p_now)
          AND r.task_id = ANY (p_tasks)
          AND (p_queues IS NULL OR r.queue = ANY (p_queues))
          AND coalesce(q.paused, 0) = 0
          AND (r.queue || chr(31) || r.concurrency_key) <> ALL (full_keys)
          AND (cardinality(paused_keys_now) = 0
               OR (r.queue || chr(31) || coalesce(r.rate_key, r.concurrency_key))
                  <> ALL (paused_keys_now))
          -- pinned: a run with durable history goes on on a worker of its own version
          AND (p_version IS NULL OR r.version IS NULL OR r.version = p_version
               OR r.task_id = ANY (p_unpinned)
               OR NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = r.id))
        ORDER BY r.priority DESC, r.available_at, r.id
        LIMIT p_limit * 4
        FOR UPDATE OF r SKIP LOCKED
    LOOP
        IF cand.concurrency IS NOT NULL THEN
            IF NOT EXISTS (SELECT 1 FROM queue_slots WHERE queue = cand.queue
                           AND concurrency_key = cand.concurrency_key AND slot = cand.concurrency) THEN
                INSERT INTO queue_slots (queue, concurrency_key, slot)
                SELECT cand.queue, cand.concurrency_key, g FROM generate_series(1, cand.concurrency) g
                ON CONFLICT DO NOTHING;
            END IF;
            got := NULL;
            freed := NULL;
            UPDATE queue_slots SET run_id = cand.id
            WHERE (queue, concurrency_key, slot) = (
                SELECT queue, concurrency_key, slot FROM queue_slots
                WHERE queue = cand.queue AND concurrency_key = cand.concurrency_key
                  AND slot <= cand.concurrency AND run_id IS NULL
                LIMIT 1 FOR UPDATE SKIP LOCKED)
            RETURNING slot, freed_at INTO got, freed;
            CONTINUE WHEN got IS NULL;
            p_start := greatest(p_start, freed);
        END IF;
        picked := picked || cand.id;
        EXIT WHEN cardinality(picked) >= p_limit;
    END LOOP;
    IF cardinality(picked) > 0 THEN
        -- (rows come back in any order: the caller sorts them as the loop picked them; an
        -- ORDER BY here, with sorting disabled for the loop, makes the planner scan the table)
        RETURN QUERY
        UPDATE runs SET status = 'EXECUTING', attempts = attempts + (waiting_for IS NULL)::int,
            lease_token = p_token,
            lease_expires_at = p_now + p_lease, worker_id = p_worker, updated_at = p_now,
            attempt_started_at = p_start, started_at = coalesce(started_at, p_start),
            version = coalesce(version, p_version),
            expires_at = NULL, error = NULL
        WHERE id = ANY (picked) RETURNING *;
    END IF;
END $$;

