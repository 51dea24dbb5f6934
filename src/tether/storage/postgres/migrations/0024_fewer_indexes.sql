-- One index fewer to write on every trigger and claim (issue 19): runs_pending (0019: queue,
-- key, status of the runs not started yet) repeated runs_keys (0017: queue, key, claim order,
-- over the same rows). The counts it served (a queue's length, a key's queued runs, the
-- dashboard's per-key depth) walk runs_keys over the same entries and read each one's status
-- from its row.
DROP INDEX IF EXISTS runs_pending;
