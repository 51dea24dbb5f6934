-- Schedules (PostgreSQL): cron expressions that create runs. `next_run_at` is the next slot to fire;
-- a worker fires it by moving next_run_at on, conditional on its old value, in the transaction
-- that stores the run, so each slot fires once however many workers run.

CREATE TABLE schedules (
    id                 text PRIMARY KEY,
    task_id            text NOT NULL,
    cron               text NOT NULL,
    timezone           text NOT NULL,
    missed             text NOT NULL DEFAULT 'once',
    external_id        text,
    deduplication_key  text UNIQUE,
    active             integer NOT NULL DEFAULT 1,
    declared           integer NOT NULL DEFAULT 0,
    next_run_at        double precision,
    last_run_at        double precision,
    created_at         double precision NOT NULL,
    updated_at         double precision NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE active = 1;
