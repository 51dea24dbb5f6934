-- Schedules (SQLite): cron expressions that create runs. `next_run_at` is the next slot to fire;
-- a worker fires it by moving next_run_at on, conditional on its old value, in the transaction
-- that stores the run, so each slot fires once however many workers run.

CREATE TABLE schedules (
    id                 TEXT PRIMARY KEY,
    task_id            TEXT NOT NULL,
    cron               TEXT NOT NULL,
    timezone           TEXT NOT NULL,
    missed             TEXT NOT NULL DEFAULT 'once',
    external_id        TEXT,
    deduplication_key  TEXT UNIQUE,
    active             INTEGER NOT NULL DEFAULT 1,
    declared           INTEGER NOT NULL DEFAULT 0,
    next_run_at        REAL,
    last_run_at        REAL,
    created_at         REAL NOT NULL,
    updated_at         REAL NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE active = 1;
