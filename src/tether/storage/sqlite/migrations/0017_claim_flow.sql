-- Flow control in the claim (issue 22): a queue's rate limit, its cap across concurrency keys,
-- and its keys taking turns for free places (see the PostgreSQL migration of the same number).
-- The rate limit: runs per period, the period in seconds, the burst, and its scope ('queue',
-- 'concurrency_key' or 'payload': keyed by runs.rate_key, else the concurrency key); its buckets
-- are rate_buckets rows named 'queue:' || queue (GCRA as the PostgreSQL migration 0017 says:
-- `burst` the runs that may start at once, a claim late by less than one interval keeps the beat).
ALTER TABLE queues ADD COLUMN rate_limit REAL;
ALTER TABLE queues ADD COLUMN rate_period REAL;
ALTER TABLE queues ADD COLUMN rate_burst REAL;
ALTER TABLE queues ADD COLUMN rate_scope TEXT;
-- at most this many runs of the queue in all concurrency keys together (counted in the claim,
-- under the write lock, like the per-key limit)
ALTER TABLE queues ADD COLUMN total_concurrency INTEGER;
-- fairness: the key of each queue served last; the next claim goes on from the key after it
CREATE TABLE queue_turns (
    queue  TEXT PRIMARY KEY,
    key    TEXT NOT NULL
);
-- the ready runs of each queue and key, in claim order: the next key's first run is one seek
CREATE INDEX runs_keys ON runs (queue, concurrency_key, priority DESC, available_at, id)
    WHERE status IN ('QUEUED', 'DELAYED');
