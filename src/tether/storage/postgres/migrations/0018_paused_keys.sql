-- Back-pressure (issue 22): no run of a queue's key paused in paused_keys (RetryAfter, a
-- 429/503 with Retry-After, or by hand) before `until` is claimed by any claim: tether_claim
-- (0017 leaves them out), claim_standby and finish_runs' hand-over to a run held in line
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
