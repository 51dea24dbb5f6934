-- Flow control (issue 22), the tables its parts share.
-- rate_limits: named limits (app.rate_limits.set) that any step may take from.
CREATE TABLE rate_limits (
    name        text PRIMARY KEY,
    "limit"     double precision NOT NULL,   -- units per period
    period      double precision NOT NULL,   -- seconds
    burst       double precision NOT NULL,   -- units that may be taken at once (>= 1)
    updated_at  double precision NOT NULL
);
-- rate_buckets: the state of one limit for one key, as GCRA's theoretical arrival time: a unit
-- may be taken at `now` when tat - ((burst - 1) * period / limit) <= now (`burst`: how many
-- units may go at once, at least 1). A queue's own limit is the
-- bucket named 'queue:' || queue; a named limit's is its name. key '' is the limit's only key.
CREATE TABLE rate_buckets (
    name        text NOT NULL,
    key         text NOT NULL,
    tat         double precision NOT NULL,
    PRIMARY KEY (name, key)
);
-- paused_keys: a queue's key paused by back-pressure (RetryAfter, a 429/503 with Retry-After)
-- or by hand, until `until`; no run of that queue and key is claimed before then. The key is
-- the run's coalesce(rate_key, concurrency_key).
CREATE TABLE paused_keys (
    queue       text NOT NULL,
    key         text NOT NULL,
    until       double precision NOT NULL,
    reason      text,
    created_at  double precision NOT NULL,
    PRIMARY KEY (queue, key)
);
-- a run's rate-limit key when its queue's limit is keyed by a function of the payload (NULL:
-- its concurrency key is the key)
ALTER TABLE runs ADD COLUMN rate_key text;
