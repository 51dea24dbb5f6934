-- Runs a worker holds in line for a full limited queue: EXECUTING and leased, but not counted
-- against the queue's limit until the run before them ends and hands its place over (in_line
-- back to 0). A claim of the usual kind always sets 0.
ALTER TABLE runs ADD COLUMN in_line INTEGER NOT NULL DEFAULT 0;
