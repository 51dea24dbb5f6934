-- Tether schema, version 1 (PostgreSQL). Times are seconds since the epoch (double precision),
-- as in the SQLite backend, so both hand the engine the same records.

CREATE TABLE runs (
    id                  text PRIMARY KEY,
    task_id             text NOT NULL,
    queue               text NOT NULL,
    status              text NOT NULL,
    payload             text NOT NULL,
    output              text,
    error               text,
    state               text,
    metadata            text NOT NULL DEFAULT '{}',
    tags                text NOT NULL DEFAULT '[]',
    idempotency_key     text,
    idempotency_active  integer NOT NULL DEFAULT 0,
    idempotency_expires_at double precision,
    concurrency_key     text NOT NULL DEFAULT '',
    priority            integer NOT NULL DEFAULT 0,
    attempts            integer NOT NULL DEFAULT 0,
    max_attempts        integer NOT NULL,
    retry               text NOT NULL,
    max_duration        double precision,
    available_at        double precision NOT NULL,
    expires_at          double precision,
    lease_token         text,
    attempt_started_at  double precision,
    lease_expires_at    double precision,
    worker_id           text,
    parent_id           text,
    root_id             text,
    depth               integer NOT NULL DEFAULT 0,
    created_at          double precision NOT NULL,
    updated_at          double precision NOT NULL,
    started_at          double precision,
    finished_at         double precision
);

CREATE UNIQUE INDEX runs_idempotency ON runs (task_id, idempotency_key) WHERE idempotency_active = 1;
CREATE INDEX runs_ready ON runs (priority DESC, available_at, id) WHERE status IN ('QUEUED', 'DELAYED');
CREATE INDEX runs_executing ON runs (queue, concurrency_key) WHERE status = 'EXECUTING';
CREATE INDEX runs_ttl ON runs (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX runs_status ON runs (status, id);
CREATE INDEX runs_task ON runs (task_id, id);
CREATE INDEX runs_parent ON runs (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE run_tags (
    tag     text NOT NULL,
    run_id  text NOT NULL,
    PRIMARY KEY (tag, run_id)
);

-- One row per finished attempt (the attempt in progress lives on its run's row); it records the
-- claim (start, worker) and the transition that ended it (next_status, reason).
CREATE TABLE attempts (
    id           text PRIMARY KEY,
    run_id       text NOT NULL,
    number       integer NOT NULL,
    worker_id    text,
    status       text NOT NULL,
    started_at   double precision NOT NULL,
    finished_at  double precision,
    error        text,
    next_status  text,
    reason       text
);
CREATE INDEX attempts_run ON attempts (run_id, started_at);

CREATE TABLE steps (
    run_id       text NOT NULL,
    key          text NOT NULL,
    name         text NOT NULL,
    kind         text NOT NULL,
    status       text NOT NULL,
    output       text,
    error        text,
    attempt      integer NOT NULL,
    started_at   double precision NOT NULL,
    finished_at  double precision,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE events (
    id       bigserial PRIMARY KEY,
    run_id   text NOT NULL,
    at       double precision NOT NULL,
    kind     text NOT NULL,
    attempt  integer,
    name     text NOT NULL DEFAULT '',
    data     text NOT NULL DEFAULT '{}'
);
CREATE INDEX events_run ON events (run_id, id);

CREATE TABLE tasks (
    id            text PRIMARY KEY,
    queue         text NOT NULL,
    options       text NOT NULL,
    code_version  text NOT NULL,
    updated_at    double precision NOT NULL
);

CREATE TABLE queues (
    name         text PRIMARY KEY,
    concurrency  integer,
    paused       integer NOT NULL DEFAULT 0,
    updated_at   double precision NOT NULL
);

-- Concurrency slots of limited queues, per concurrency key: slot 1..limit. A claim takes a free
-- slot row (FOR UPDATE SKIP LOCKED) in the statement that claims the run, and the statement that
-- ends the attempt frees it, so claims of one queue never wait on one shared counter row.
CREATE TABLE queue_slots (
    queue            text NOT NULL,
    concurrency_key  text NOT NULL,
    slot             integer NOT NULL,
    run_id           text,
    PRIMARY KEY (queue, concurrency_key, slot)
);
CREATE INDEX queue_slots_run ON queue_slots (run_id) WHERE run_id IS NOT NULL;

CREATE TABLE workers (
    id              text PRIMARY KEY,
    hostname        text NOT NULL,
    pid             integer NOT NULL,
    queues          text NOT NULL,
    concurrency     integer NOT NULL,
    started_at      double precision NOT NULL,
    last_seen_at    double precision NOT NULL,
    stopped_at      double precision
);

-- Claim up to `p_limit` ready runs for a worker, within queue limits. One call, one round trip.
-- With p_relaxed the claim commits without waiting for the WAL flush: a claim lost in a server
-- crash leaves the run QUEUED, and its worker is fenced out by the lease token it never got.
CREATE FUNCTION tether_claim(p_worker text, p_tasks text[], p_queues text[], p_limit integer,
                             p_now double precision, p_lease double precision, p_token text,
                             p_relaxed boolean)
RETURNS SETOF runs LANGUAGE plpgsql
-- Walk the ready-runs index in priority order whatever the table statistics say: on a table
-- not analyzed yet the planner would otherwise read and sort every queued run on each claim.
SET enable_seqscan = off SET enable_sort = off
AS $$
DECLARE
    cand record;
    taken integer := 0;
    got integer;
    full_keys text[];
    claimed runs;
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
    FOR cand IN
        SELECT r.id, r.queue, r.concurrency_key, q.concurrency
        FROM runs r LEFT JOIN queues q ON q.name = r.queue
        WHERE r.status IN ('QUEUED', 'DELAYED') AND r.available_at <= p_now
          AND (r.expires_at IS NULL OR r.expires_at > p_now)
          AND r.task_id = ANY (p_tasks)
          AND (p_queues IS NULL OR r.queue = ANY (p_queues))
          AND coalesce(q.paused, 0) = 0
          AND (r.queue || chr(31) || r.concurrency_key) <> ALL (full_keys)
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
            UPDATE queue_slots SET run_id = cand.id
            WHERE (queue, concurrency_key, slot) = (
                SELECT queue, concurrency_key, slot FROM queue_slots
                WHERE queue = cand.queue AND concurrency_key = cand.concurrency_key
                  AND slot <= cand.concurrency AND run_id IS NULL
                LIMIT 1 FOR UPDATE SKIP LOCKED)
            RETURNING slot INTO got;
            CONTINUE WHEN got IS NULL;
        END IF;
        UPDATE runs SET status = 'EXECUTING', attempts = attempts + 1, lease_token = p_token,
            lease_expires_at = p_now + p_lease, worker_id = p_worker, updated_at = p_now,
            attempt_started_at = p_now, started_at = coalesce(started_at, p_now),
            expires_at = NULL, error = NULL
        WHERE id = cand.id RETURNING * INTO claimed;
        RETURN NEXT claimed;
        taken := taken + 1;
        EXIT WHEN taken >= p_limit;
    END LOOP;
END $$;
