-- Failure hooks owed after a crash, and what the server's alerts read.
--
-- A run whose last attempt crashed (its worker died: the reaper of another worker ends it) is
-- FAILED without its `on_failure` hook having run. The statement that records that attempt
-- also records the hook as owed here (a trigger: whichever path ends the attempt), in the same
-- transaction, so no crash between the two can lose it. A worker that has the task's code takes
-- the row (held_by / held_until: one worker at a time), runs the hook and deletes the row; a
-- worker that dies while holding it leaves it to another once held_until passed (at least once).
CREATE TABLE owed_hooks (
    run_id      TEXT PRIMARY KEY,
    task_id     TEXT NOT NULL,
    created_at  REAL NOT NULL,
    held_by     TEXT,
    held_until  REAL
);
CREATE INDEX owed_hooks_task ON owed_hooks (task_id, held_until);

CREATE TRIGGER attempts_owe_hook AFTER INSERT ON attempts
WHEN NEW.status = 'CRASHED' AND NEW.next_status = 'FAILED'
BEGIN
    INSERT INTO owed_hooks (run_id, task_id, created_at)
    SELECT id, task_id, NEW.finished_at FROM runs WHERE id = NEW.run_id
    ON CONFLICT (run_id) DO UPDATE SET held_by = NULL, held_until = NULL,
        created_at = excluded.created_at;
END;

-- The server's alerts read the runs that failed for good since a cursor (finished_at).
CREATE INDEX runs_failed_at ON runs (finished_at) WHERE status IN ('FAILED', 'TIMED_OUT');
