-- Code versions: each worker records the version of the code it runs (Tether(version=...), by
-- default a hash of its tasks' sources), and a run the version of the worker that first
-- executed it (set by its first claim).
ALTER TABLE workers ADD COLUMN version TEXT;
ALTER TABLE runs ADD COLUMN version TEXT;
