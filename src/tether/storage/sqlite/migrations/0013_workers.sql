-- The workers registry: what each worker holds and how its event loop fares. The heartbeat
-- writes `running` (attempts in hand) and `last_claim_at` (when a claim last gave it a run);
-- the stall detector writes `stalled_since` (set while the loop does not answer, cleared when
-- it does) and `stalls` (how many so far) at once, and the heartbeat repeats them. `tasks`
-- (a JSON list of task ids) tells which ready runs it could take.
ALTER TABLE workers ADD COLUMN running INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN stalled_since REAL;
ALTER TABLE workers ADD COLUMN stalls INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN last_claim_at REAL;
ALTER TABLE workers ADD COLUMN tasks TEXT;
