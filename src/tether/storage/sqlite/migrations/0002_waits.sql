-- Durable waits (sleeps, tokens, child runs) and the position of every durable call of a run.

-- What a run waits for, or last waited for: a token id ("waitpoint_..."), a group of child runs
-- ("group_...") or "sleep"; kept until its next attempt ends, so a claim can tell a resumed run.
-- On a child run, `resolves` is the parent's group it counts toward.
ALTER TABLE runs ADD COLUMN waiting_for TEXT;
ALTER TABLE runs ADD COLUMN resolves TEXT;
CREATE INDEX runs_waiting ON runs (available_at) WHERE status = 'WAITING';
CREATE INDEX runs_waiting_for ON runs (waiting_for) WHERE status = 'WAITING' AND waiting_for <> 'sleep';
CREATE INDEX runs_resolves ON runs (resolves) WHERE resolves IS NOT NULL;

-- The order in which a run's code reached each durable call (step, once, wait, trigger): a
-- resumed run whose code reaches a different call at a stored position fails clearly.
ALTER TABLE steps ADD COLUMN seq INTEGER;

-- Tokens a person or another system completes (human-in-the-loop).
CREATE TABLE waitpoints (
    id                  TEXT PRIMARY KEY,
    run_id              TEXT,
    status              TEXT NOT NULL,
    output              TEXT,
    timeout_at          REAL,
    idempotency_key     TEXT,
    tags                TEXT NOT NULL DEFAULT '[]',
    created_at          REAL NOT NULL,
    completed_at        REAL
);
CREATE UNIQUE INDEX waitpoints_idempotency ON waitpoints (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX waitpoints_status ON waitpoints (status, id);

-- When the last unfinished child of a group ends (however it ends: an attempt, a cancel, the
-- reaper, expiry), its parent leaves WAITING in the same transaction.
CREATE TRIGGER runs_resolve_group AFTER UPDATE OF status ON runs
WHEN NEW.resolves IS NOT NULL
    AND NEW.status IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED')
    AND OLD.status NOT IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED')
BEGIN
    INSERT INTO events (run_id, at, kind, attempt, name, data)
    SELECT p.id, NEW.updated_at, 'status', p.attempts, 'QUEUED',
           json_object('reason', 'child runs finished', 'from', 'WAITING')
    FROM runs p
    WHERE p.id = NEW.parent_id AND p.status = 'WAITING' AND p.waiting_for = NEW.resolves
      AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.resolves = NEW.resolves
                      AND c.status NOT IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED'));
    UPDATE runs SET status = 'QUEUED', available_at = NEW.updated_at, updated_at = NEW.updated_at
    WHERE id = NEW.parent_id AND status = 'WAITING' AND waiting_for = NEW.resolves
      AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.resolves = NEW.resolves
                      AND c.status NOT IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED'));
END;
