-- Flow control in the claim (issue 22): a queue's rate limit, its cap across concurrency keys,
-- and its keys taking turns for free places.
--
-- A queue's rate limit (Queue(rate_limit=RateLimit(limit, period, burst, key))): runs per
-- period, the period in seconds, the burst, and its scope: 'queue' (one bucket, key ''),
-- 'concurrency_key' (a bucket per concurrency key) or 'payload' (a bucket per runs.rate_key,
-- the concurrency key when that is NULL). Its buckets are rate_buckets rows named
-- 'queue:' || queue (migration 0016), GCRA: a run starts at `now` only when
-- tat - (burst - 1) * T <= now (T = period / limit), and starting it moves tat on by T: from
-- tat itself when now < tat + T (a claim a little late keeps the beat, so the rate holds
-- though claims come a few milliseconds after the bucket has room), else from now. Here
-- `burst` is how many runs may start at once (at least 1). The runs' slots are T apart, so in
-- any window of `period` at most limit + burst start, as long as starts come less than T after
-- their slots (as in migration 0016).
ALTER TABLE queues ADD COLUMN rate_limit double precision;
ALTER TABLE queues ADD COLUMN rate_period double precision;
ALTER TABLE queues ADD COLUMN rate_burst double precision;
ALTER TABLE queues ADD COLUMN rate_scope text;
-- total_concurrency: at most this many runs of the queue in all concurrency keys together; its
-- places are queue_slots rows of the reserved key chr(30), taken with the key's own place and
-- freed with it (the statements that free a run's slot rows free all of them)
ALTER TABLE queues ADD COLUMN total_concurrency integer;

-- Fairness: the keys of a queue with a concurrency limit take turns for free places (in key
-- order, round and round); `key` is the key served last. A hint: a claim moves it only when no
-- other claim holds its row (SKIP LOCKED), so claims never queue behind it.
CREATE TABLE queue_turns (
    queue  text PRIMARY KEY,
    key    text NOT NULL
);
-- the ready runs of each queue and key, in claim order: the next key's first run is one seek
CREATE INDEX runs_keys ON runs (queue, concurrency_key, priority DESC, available_at, id)
    WHERE status IN ('QUEUED', 'DELAYED');

-- Take the places run p_id needs to start now, all or nothing: a place of its key (p_conc;
-- NULL: no limit) and a queue-wide place (p_total). Returns the latest time a place taken was
-- freed (at least p_now: the run starts no earlier), or NULL when a place is missing (nothing
-- is then kept). Slot rows are taken with SKIP LOCKED: a claim never waits for them.
CREATE FUNCTION tether_take(p_id text, p_queue text, p_key text, p_conc integer,
                            p_total integer, p_now double precision)
RETURNS double precision LANGUAGE plpgsql
SET enable_seqscan = off SET plan_cache_mode = force_generic_plan SET jit = off
AS $$
DECLARE
    start double precision := p_now;
    freed double precision;
    got integer;
BEGIN
    IF p_conc IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM queue_slots WHERE queue = p_queue
                       AND concurrency_key = p_key AND slot = p_conc) THEN
            INSERT INTO queue_slots (queue, concurrency_key, slot)
            SELECT p_queue, p_key, g FROM generate_series(1, p_conc) g
            ON CONFLICT DO NOTHING;
        END IF;
        UPDATE queue_slots SET run_id = p_id
        WHERE (queue, concurrency_key, slot) = (
            SELECT queue, concurrency_key, slot FROM queue_slots
            WHERE queue = p_queue AND concurrency_key = p_key AND slot <= p_conc
              AND run_id IS NULL
            LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING slot, freed_at INTO got, freed;
        IF got IS NULL THEN
            RETURN NULL;
        END IF;
        start := greatest(start, freed);
        IF p_total IS NOT NULL THEN
            IF NOT EXISTS (SELECT 1 FROM queue_slots WHERE queue = p_queue
                           AND concurrency_key = chr(30) AND slot = p_total) THEN
                INSERT INTO queue_slots (queue, concurrency_key, slot)
                SELECT p_queue, chr(30), g FROM generate_series(1, p_total) g
                ON CONFLICT DO NOTHING;
            END IF;
            got := NULL;
            freed := NULL;
            UPDATE queue_slots SET run_id = p_id
            WHERE (queue, concurrency_key, slot) = (
                SELECT queue, concurrency_key, slot FROM queue_slots
                WHERE queue = p_queue AND concurrency_key = chr(30) AND slot <= p_total
                  AND run_id IS NULL
                LIMIT 1 FOR UPDATE SKIP LOCKED)
            RETURNING slot, freed_at INTO got, freed;
            IF got IS NULL THEN  -- the key's place goes back as it was
                UPDATE queue_slots SET run_id = NULL
                WHERE queue = p_queue AND concurrency_key = p_key AND run_id = p_id;
                RETURN NULL;
            END IF;
            start := greatest(start, freed);
        END IF;
    END IF;
    RETURN start;
END $$;

-- tether_claim (last defined in 0009) with the rate limits, the queue-wide caps and the turns
-- of keys. Candidates come in claim order (priority, age, id) as before; when one is of a queue
-- with a concurrency limit, that queue's turn has come and its next key in turn (after the
-- one served last, round and round) gives its first ready run instead. Keys without a free
-- place or out of rate are passed over, and so are queues whose rate is spent (read before the
-- walk: their runs are not candidates). A run held back by its rate is not claimed: it stays
-- QUEUED, no attempt counted. The rate buckets are read without locks during the walk and
-- settled at its end: each locked (FOR UPDATE, every claim in the same order of bucket, so
-- two claims never wait for each other in a cycle), the picks it has room for kept. Keys paused
-- by back-pressure (paused_keys, migration 0016; 0018 adds its index) are left out of the
-- candidates and passed over by the keys' turns.
CREATE OR REPLACE FUNCTION tether_claim(p_worker text, p_tasks text[], p_queues text[],
                                        p_limit integer, p_now double precision,
                                        p_lease double precision, p_token text,
                                        p_relaxed boolean, p_version text,
                                        p_unpinned text[])
RETURNS SETOF runs LANGUAGE plpgsql
SET enable_seqscan = off SET enable_sort = off SET plan_cache_mode = force_generic_plan
-- (jit off: a scan of the small queues table costs "disabled" with seqscan off, which would
-- make the server compile the statement, 150 ms a call)
SET jit = off
AS $$
DECLARE
    cand record;
    nxt record;
    took double precision;
    p_start double precision := p_now;
    full_keys text[];
    held text[];
    paused_keys_now text[];
    picked text[] := '{}';
    fair_queues text[] := '{}';   -- the queues whose keys take turns, as met in this claim
    fair_keys text[] := '{}';     -- ... the key each served last
    fair_done boolean[] := '{}';  -- ... none of its keys can give a run any more
    fair_moved boolean[] := '{}'; -- ... this claim served one of its keys
    pos integer;
    tk text;  -- the key the turn is at
    nb text;  -- the rate bucket key of the run the turn found
    wrapped boolean;
    -- rate buckets as this claim sees them: read without a lock, moved by its own picks, and
    -- settled at the end under locks taken in one order (so claims never deadlock on them)
    b_ids text[] := '{}';        -- queue || chr(31) || bucket key
    b_queue text[] := '{}';
    b_key text[] := '{}';
    b_tat double precision[] := '{}';
    b_interval double precision[] := '{}';
    b_tolerance double precision[] := '{}';
    bpos integer;
    pick_bucket text[] := '{}';  -- the bucket of each picked run (NULL: none), as picked
    dropped text[] := '{}';
    bid text;
    settled double precision;
BEGIN
    IF p_relaxed THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    -- (queue, key) pairs without a free place; key chr(30): the queue's total_concurrency
    SELECT coalesce(array_agg(k), '{}') INTO full_keys FROM (
        SELECT s.queue || chr(31) || s.concurrency_key AS k
        FROM queue_slots s JOIN queues q ON q.name = s.queue
        WHERE s.slot <= CASE WHEN s.concurrency_key = chr(30) THEN q.total_concurrency
                             ELSE q.concurrency END
        GROUP BY s.queue, s.concurrency_key, q.concurrency, q.total_concurrency
        HAVING count(*) FILTER (WHERE s.run_id IS NULL) = 0
           AND count(*) >= CASE WHEN s.concurrency_key = chr(30) THEN q.total_concurrency
                                ELSE q.concurrency END) f;
    -- (queue, bucket key) pairs out of rate now
    SELECT coalesce(array_agg(substr(b.name, 7) || chr(31) || b.key), '{}') INTO held
    FROM queues q JOIN rate_buckets b ON b.name = 'queue:' || q.name
    WHERE q.rate_limit IS NOT NULL AND (p_queues IS NULL OR q.name = ANY (p_queues))
      AND b.tat - (q.rate_burst - 1) * q.rate_period / q.rate_limit > p_now;
    -- keys paused by back-pressure (an empty table: one index probe, and no test per run)
    SELECT coalesce(array_agg(p.queue || chr(31) || p.key), '{}') INTO paused_keys_now
    FROM paused_keys p WHERE p.until > p_now;
    FOR cand IN
        SELECT r.id, r.queue, r.concurrency_key, q.concurrency, q.total_concurrency,
               q.rate_period / q.rate_limit AS rate_interval,
               (q.rate_burst - 1) * q.rate_period / q.rate_limit AS rate_tolerance, q.rate_scope,
               CASE WHEN q.rate_limit IS NULL THEN NULL WHEN q.rate_scope = 'queue' THEN ''
                    WHEN q.rate_scope = 'concurrency_key' THEN r.concurrency_key
                    ELSE coalesce(r.rate_key, r.concurrency_key) END AS bucket
        FROM runs r LEFT JOIN queues q ON q.name = r.queue
        WHERE r.status IN ('QUEUED', 'DELAYED') AND r.available_at <= p_now
          AND (r.expires_at IS NULL OR r.expires_at > p_now)
          AND r.task_id = ANY (p_tasks)
          AND (p_queues IS NULL OR r.queue = ANY (p_queues))
          AND coalesce(q.paused, 0) = 0
          AND (r.queue || chr(31) || r.concurrency_key) <> ALL (full_keys)
          AND (q.total_concurrency IS NULL OR (r.queue || chr(31) || chr(30)) <> ALL (full_keys))
          AND (q.rate_limit IS NULL OR (r.queue || chr(31) || CASE WHEN q.rate_scope = 'queue'
               THEN '' WHEN q.rate_scope = 'concurrency_key' THEN r.concurrency_key
               ELSE coalesce(r.rate_key, r.concurrency_key) END) <> ALL (held))
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
        CONTINUE WHEN cand.id = ANY (picked);
        IF cand.concurrency IS NULL THEN
            bpos := NULL;
            IF cand.bucket IS NOT NULL THEN
                bid := cand.queue || chr(31) || cand.bucket;
                CONTINUE WHEN bid = ANY (held);
                bpos := array_position(b_ids, bid);
                IF bpos IS NULL THEN
                    b_ids := b_ids || bid;
                    b_queue := b_queue || cand.queue;
                    b_key := b_key || cand.bucket;
                    b_tat := b_tat || coalesce((SELECT b.tat FROM rate_buckets b
                        WHERE b.name = 'queue:' || cand.queue AND b.key = cand.bucket), p_now);
                    b_interval := b_interval || cand.rate_interval;
                    b_tolerance := b_tolerance || cand.rate_tolerance;
                    bpos := cardinality(b_ids);
                END IF;
                IF b_tat[bpos] - b_tolerance[bpos] > p_now THEN
                    held := held || bid;
                    CONTINUE;
                END IF;
                b_tat[bpos] := CASE WHEN p_now < b_tat[bpos] + b_interval[bpos] THEN b_tat[bpos]
                                    ELSE p_now END + b_interval[bpos];
            END IF;
            picked := picked || cand.id;
            pick_bucket := pick_bucket || CASE WHEN bpos IS NULL THEN NULL ELSE bid END;
        ELSE
            -- the queue's turn: its next key in turn gives its first ready run
            pos := array_position(fair_queues, cand.queue);
            IF pos IS NULL THEN
                fair_queues := fair_queues || cand.queue;
                fair_keys := fair_keys || coalesce(
                    (SELECT t.key FROM queue_turns t WHERE t.queue = cand.queue), '');
                fair_done := fair_done || false;
                fair_moved := fair_moved || false;
                pos := cardinality(fair_queues);
            END IF;
            CONTINUE WHEN fair_done[pos];
            tk := fair_keys[pos];
            wrapped := false;
            took := NULL;
            FOR i IN 1..64 LOOP
                IF tk IS NULL THEN
                    SELECT r.id, r.concurrency_key, coalesce(r.rate_key, r.concurrency_key) AS own
                    INTO nxt FROM runs r
                    WHERE r.queue = cand.queue AND r.status IN ('QUEUED', 'DELAYED')
                      AND r.available_at <= p_now
                      AND (r.expires_at IS NULL OR r.expires_at > p_now)
                      AND r.task_id = ANY (p_tasks) AND r.id <> ALL (picked)
                      AND (p_version IS NULL OR r.version IS NULL OR r.version = p_version
                           OR r.task_id = ANY (p_unpinned)
                           OR NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = r.id))
                    ORDER BY r.queue, r.concurrency_key, r.priority DESC, r.available_at, r.id
                    LIMIT 1 FOR UPDATE OF r SKIP LOCKED;
                ELSE
                    SELECT r.id, r.concurrency_key, coalesce(r.rate_key, r.concurrency_key) AS own
                    INTO nxt FROM runs r
                    WHERE r.queue = cand.queue AND r.concurrency_key > tk
                      AND r.status IN ('QUEUED', 'DELAYED') AND r.available_at <= p_now
                      AND (r.expires_at IS NULL OR r.expires_at > p_now)
                      AND r.task_id = ANY (p_tasks) AND r.id <> ALL (picked)
                      AND (p_version IS NULL OR r.version IS NULL OR r.version = p_version
                           OR r.task_id = ANY (p_unpinned)
                           OR NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = r.id))
                    ORDER BY r.queue, r.concurrency_key, r.priority DESC, r.available_at, r.id
                    LIMIT 1 FOR UPDATE OF r SKIP LOCKED;
                END IF;
                IF NOT FOUND THEN
                    EXIT WHEN wrapped OR tk IS NULL;
                    wrapped := true;  -- round again from the first key
                    tk := NULL;
                    CONTINUE;
                END IF;
                -- after going round, the keys past the one served last were tried already
                EXIT WHEN wrapped AND nxt.concurrency_key > fair_keys[pos];
                tk := nxt.concurrency_key;
                CONTINUE WHEN (cand.queue || chr(31) || tk) = ANY (full_keys);
                -- a key paused by back-pressure: the turn passes over it
                CONTINUE WHEN cardinality(paused_keys_now) > 0
                    AND (cand.queue || chr(31) || nxt.own) = ANY (paused_keys_now);
                nb := CASE WHEN cand.bucket IS NULL THEN NULL WHEN cand.rate_scope = 'queue' THEN ''
                           WHEN cand.rate_scope = 'concurrency_key' THEN tk ELSE nxt.own END;
                bpos := NULL;
                IF nb IS NOT NULL THEN
                    bid := cand.queue || chr(31) || nb;
                    EXIT WHEN bid = ANY (held) AND cand.rate_scope = 'queue';
                    CONTINUE WHEN bid = ANY (held);
                    bpos := array_position(b_ids, bid);
                    IF bpos IS NULL THEN
                        b_ids := b_ids || bid;
                        b_queue := b_queue || cand.queue;
                        b_key := b_key || nb;
                        b_tat := b_tat || coalesce((SELECT b.tat FROM rate_buckets b
                            WHERE b.name = 'queue:' || cand.queue AND b.key = nb), p_now);
                        b_interval := b_interval || cand.rate_interval;
                        b_tolerance := b_tolerance || cand.rate_tolerance;
                        bpos := cardinality(b_ids);
                    END IF;
                    IF b_tat[bpos] - b_tolerance[bpos] > p_now THEN
                        held := held || bid;
                        EXIT WHEN cand.rate_scope = 'queue';
                        CONTINUE;
                    END IF;
                END IF;
                took := tether_take(nxt.id, cand.queue, tk, cand.concurrency,
                                    cand.total_concurrency, p_now);
                IF took IS NOT NULL THEN
                    IF bpos IS NOT NULL THEN
                        b_tat[bpos] := CASE WHEN p_now < b_tat[bpos] + b_interval[bpos]
                                            THEN b_tat[bpos] ELSE p_now END + b_interval[bpos];
                    END IF;
                    EXIT;
                END IF;
                -- no place for that key (or for the whole queue) now
                full_keys := full_keys || (cand.queue || chr(31) || tk);
                IF cand.total_concurrency IS NOT NULL AND NOT EXISTS (
                        SELECT 1 FROM queue_slots WHERE queue = cand.queue
                          AND concurrency_key = chr(30) AND slot <= cand.total_concurrency
                          AND run_id IS NULL) THEN
                    EXIT;
                END IF;
            END LOOP;
            IF took IS NULL THEN
                fair_done[pos] := true;
                CONTINUE;
            END IF;
            picked := picked || nxt.id;
            pick_bucket := pick_bucket || CASE WHEN bpos IS NULL THEN NULL ELSE bid END;
            p_start := greatest(p_start, took);
            fair_keys[pos] := nxt.concurrency_key;
            fair_moved[pos] := true;
        END IF;
        EXIT WHEN cardinality(picked) >= p_limit;
    END LOOP;
    -- Settle the rate buckets: lock each (in one order for every claim), and keep the picks
    -- its true state has room for, in pick order; the others give their places back and stay
    -- QUEUED (another claim took those units meanwhile).
    FOR bid IN SELECT x FROM unnest(b_ids) x ORDER BY x LOOP
        bpos := array_position(b_ids, bid);
        INSERT INTO rate_buckets (name, key, tat) VALUES ('queue:' || b_queue[bpos], b_key[bpos], p_now)
        ON CONFLICT DO NOTHING;
        SELECT b.tat INTO settled FROM rate_buckets b
        WHERE b.name = 'queue:' || b_queue[bpos] AND b.key = b_key[bpos] FOR UPDATE;
        FOR i IN 1..cardinality(picked) LOOP
            CONTINUE WHEN pick_bucket[i] IS DISTINCT FROM bid;
            IF settled - b_tolerance[bpos] <= p_now THEN
                settled := CASE WHEN p_now < settled + b_interval[bpos] THEN settled ELSE p_now END
                           + b_interval[bpos];
            ELSE
                dropped := dropped || picked[i];
            END IF;
        END LOOP;
        UPDATE rate_buckets SET tat = settled
        WHERE name = 'queue:' || b_queue[bpos] AND key = b_key[bpos];
    END LOOP;
    IF cardinality(dropped) > 0 THEN
        UPDATE queue_slots SET run_id = NULL WHERE run_id = ANY (dropped);
        picked := ARRAY(SELECT x FROM unnest(picked) x WHERE x <> ALL (dropped));
    END IF;
    -- where each queue's turn goes on from (a hint: skipped when another claim holds the row)
    FOR pos IN 1..coalesce(cardinality(fair_queues), 0) LOOP
        CONTINUE WHEN NOT fair_moved[pos];
        PERFORM 1 FROM queue_turns WHERE queue = fair_queues[pos] FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            UPDATE queue_turns SET key = fair_keys[pos] WHERE queue = fair_queues[pos];
        ELSIF NOT EXISTS (SELECT 1 FROM queue_turns WHERE queue = fair_queues[pos]) THEN
            INSERT INTO queue_turns (queue, key) VALUES (fair_queues[pos], fair_keys[pos])
            ON CONFLICT DO NOTHING;
        END IF;
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
