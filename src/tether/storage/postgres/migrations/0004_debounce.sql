-- Debounced triggers: at most one not-yet-started (DELAYED) run per task and debounce key; a
-- trigger with the key of such a run pushes its start back instead of making another run.
ALTER TABLE runs ADD COLUMN debounce_key TEXT;
CREATE UNIQUE INDEX runs_debounce ON runs (task_id, debounce_key)
    WHERE status = 'DELAYED' AND debounce_key IS NOT NULL;
