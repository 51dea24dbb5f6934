-- Retention (storage/retention.py): deleting a finished run deletes the tokens it created,
-- found by this index (tokens are few next to runs: no cost on the runs' hot path).
CREATE INDEX waitpoints_run ON waitpoints (run_id) WHERE run_id IS NOT NULL;
