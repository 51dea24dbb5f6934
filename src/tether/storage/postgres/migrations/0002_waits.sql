-- Durable waits (sleeps, tokens, child runs) and the position of every durable call of a run.

-- What a run waits for, or last waited for: a token id ("waitpoint_..."), a group of child runs
-- ("group_...") or "sleep"; kept until its next attempt ends, so a claim can tell a resumed run.
-- On a child run, `resolves` is the parent's group it counts toward.
ALTER TABLE runs ADD COLUMN waiting_for text;
ALTER TABLE runs ADD COLUMN resolves text;
CREATE INDEX runs_waiting ON runs (available_at) WHERE status = 'WAITING';
CREATE INDEX runs_waiting_for ON runs (waiting_for) WHERE status = 'WAITING' AND waiting_for <> 'sleep';
CREATE INDEX runs_resolves ON runs (resolves) WHERE resolves IS NOT NULL;

-- The order in which a run's code reached each durable call (step, once, wait, trigger): a
-- resumed run whose code reaches a different call at a stored position fails clearly.
ALTER TABLE steps ADD COLUMN seq integer;

-- Tokens a person or another system completes (human-in-the-loop).
CREATE TABLE waitpoints (
    id                  text PRIMARY KEY,
    run_id              text,
    status              text NOT NULL,
    output              text,
    timeout_at          double precision,
    idempotency_key     text,
    tags                text NOT NULL DEFAULT '[]',
    created_at          double precision NOT NULL,
    completed_at        double precision
);
CREATE UNIQUE INDEX waitpoints_idempotency ON waitpoints (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX waitpoints_status ON waitpoints (status, id);

-- When the last unfinished child of a group ends (however it ends: an attempt, a cancel, the
-- reaper, expiry), its parent leaves WAITING in the same transaction and the workers hear of
-- it at commit. The parent row is locked first, so siblings ending at the same moment check
-- one after the other. (A parent that parks at the very moment its last child ends may miss
-- this; the workers' sweep, `resolve_waits`, moves it on within a second.)
CREATE FUNCTION tether_resolve_group() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    parent runs;
BEGIN
    SELECT * INTO parent FROM runs WHERE id = NEW.parent_id FOR UPDATE;
    IF parent.status = 'WAITING' AND parent.waiting_for = NEW.resolves AND NOT EXISTS (
        SELECT 1 FROM runs c WHERE c.resolves = NEW.resolves AND c.id <> NEW.id
          AND c.status NOT IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED'))
    THEN
        UPDATE runs SET status = 'QUEUED', available_at = NEW.updated_at,
            updated_at = NEW.updated_at
        WHERE id = parent.id;
        INSERT INTO events (run_id, at, kind, attempt, name, data)
        VALUES (parent.id, NEW.updated_at, 'status', parent.attempts, 'QUEUED',
                json_build_object('reason', 'child runs finished', 'from', 'WAITING')::text);
        PERFORM pg_notify('tether_' || current_schema() || '_workers', 'runs');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER runs_resolve_group AFTER UPDATE OF status ON runs FOR EACH ROW
WHEN (NEW.resolves IS NOT NULL
      AND NEW.status IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED')
      AND OLD.status NOT IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED'))
EXECUTE FUNCTION tether_resolve_group();
