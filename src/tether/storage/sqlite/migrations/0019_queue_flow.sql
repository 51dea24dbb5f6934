-- Flow control (issue 22, part 3): a queue's length limit and its per-key strategy.
-- max_queued: at most this many runs of the queue waiting to start (QUEUED or DELAYED); NULL:
-- no limit. on_key_limit: 'queue', 'cancel_in_progress' or 'cancel_newest'.
ALTER TABLE queues ADD COLUMN max_queued INTEGER;
ALTER TABLE queues ADD COLUMN on_key_limit TEXT NOT NULL DEFAULT 'queue';
-- the runs not started yet, by queue and key: the length check counts a queue's entries, the
-- per-key strategies and the dashboard's per-key depth a key's
CREATE INDEX runs_pending ON runs (queue, concurrency_key, status)
    WHERE status IN ('QUEUED', 'DELAYED');
