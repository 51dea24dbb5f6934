-- One index fewer to write on every trigger and claim (issue 19: a trigger's commit wrote a page
-- of each of eight b-trees, and the per-run cost of a single trigger is its pages). runs_pending
-- (0019: queue, key, status of the runs not started yet) repeated runs_keys (0017: queue, key,
-- claim order, over the same rows); runs_keys now ends with the status, so the per-key counts
-- of queued runs (cancel_newest, the dashboard's per-key depth) still read no table row.
DROP INDEX IF EXISTS runs_pending;
DROP INDEX IF EXISTS runs_keys;
CREATE INDEX runs_keys ON runs (queue, concurrency_key, priority DESC, available_at, id, status)
    WHERE status IN ('QUEUED', 'DELAYED');
