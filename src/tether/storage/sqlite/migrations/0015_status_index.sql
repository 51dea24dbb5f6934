-- runs_status indexes only the statuses a run rests in off the hot path: a run that is
-- triggered, claimed and completes (QUEUED -> EXECUTING -> COMPLETED) no longer moves in it twice.
-- Those three are found otherwise: QUEUED by runs_ready, EXECUTING by runs_executing, COMPLETED
-- (most runs) by walking the ids. The condition is written as ORs of equalities, which SQLite
-- knows `status = 'X'` implies; the runs list repeats it word for word (storage/sqlite/runs.py:
-- STATUS_INDEX_WHERE) to use the index for several statuses at once.
DROP INDEX runs_status;
CREATE INDEX runs_status ON runs (status, id)
WHERE status = 'DELAYED' OR status = 'WAITING' OR status = 'FAILED' OR status = 'CANCELED'
   OR status = 'TIMED_OUT' OR status = 'EXPIRED';
