-- A claim whose first ready runs (in claim order) are all in queues without a concurrency limit,
-- a queue-wide cap or a rate limit takes them at once: tether_claim takes every such run it meets,
-- so it would take these same runs, and its bookkeeping (full keys, rate buckets, paused keys,
-- turns) is skipped. When one of them is in such a queue, tether_claim makes the claim. Nothing
-- ready: one index probe, and nothing else is read. The runs left out are those tether_claim
-- leaves out (a paused queue or key, a pinned version). Same settings as tether_claim: the ready
-- index is walked even on a table never analyzed.
CREATE FUNCTION tether_claim_ready(p_worker text, p_tasks text[], p_queues text[],
                                   p_limit integer, p_now double precision,
                                   p_lease double precision, p_token text,
                                   p_relaxed boolean, p_version text,
                                   p_unpinned text[])
RETURNS SETOF runs LANGUAGE plpgsql
SET enable_seqscan = off SET enable_sort = off SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
DECLARE
    ids text[];
    plain boolean;
BEGIN
    SELECT array_agg(c.id), bool_and(c.plain) INTO ids, plain FROM (
        SELECT r.id, q.concurrency IS NULL AND q.total_concurrency IS NULL
                     AND q.rate_limit IS NULL AS plain
        FROM runs r LEFT JOIN queues q ON q.name = r.queue
        WHERE r.status IN ('QUEUED', 'DELAYED') AND r.available_at <= p_now
          AND (r.expires_at IS NULL OR r.expires_at > p_now)
          AND r.task_id = ANY (p_tasks)
          AND (p_queues IS NULL OR r.queue = ANY (p_queues))
          AND coalesce(q.paused, 0) = 0
          AND NOT EXISTS (SELECT 1 FROM paused_keys p WHERE p.queue = r.queue
                          AND p.key = coalesce(r.rate_key, r.concurrency_key)
                          AND p.until > p_now)
          AND (p_version IS NULL OR r.version IS NULL OR r.version = p_version
               OR r.task_id = ANY (p_unpinned)
               OR NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = r.id))
        ORDER BY r.priority DESC, r.available_at, r.id
        LIMIT p_limit
        FOR UPDATE OF r SKIP LOCKED) c;
    IF plain IS NULL THEN
        RETURN;  -- nothing ready
    END IF;
    IF NOT plain THEN
        RETURN QUERY SELECT * FROM tether_claim(p_worker, p_tasks, p_queues, p_limit, p_now,
                                                p_lease, p_token, p_relaxed, p_version,
                                                p_unpinned);
        RETURN;
    END IF;
    IF p_relaxed THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    RETURN QUERY
    UPDATE runs SET status = 'EXECUTING', attempts = attempts + (waiting_for IS NULL)::int,
        lease_token = p_token, lease_expires_at = p_now + p_lease, worker_id = p_worker,
        updated_at = p_now, attempt_started_at = p_now, started_at = coalesce(started_at, p_now),
        version = coalesce(version, p_version), expires_at = NULL, error = NULL
    WHERE id = ANY (ids) RETURNING *;
END $$;
