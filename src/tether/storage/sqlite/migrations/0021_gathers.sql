-- Several waits at once (asyncio.gather of ctx waits, SyncContext.parallel): the run parks
-- once, with `waiting_for` = the gather's id ("gather_<run>_<first key>.<lease token>"), and
-- one row here per thing it still waits for. An event (a token completed, a child group's last
-- run ended) deletes the rows naming it; a row with `due_at` is also over by time (a sleep, a
-- token's timeout). The run's available_at is the latest due_at of its rows (9999-12-31 while a
-- row has none), so promote_delayed wakes it by time as any sleeper; it is queued at once when
-- no row is left that is not due. Single waits never write here.
CREATE TABLE wait_parts (
    wait    TEXT NOT NULL,   -- the gather's id, the run's waiting_for
    part    TEXT NOT NULL,   -- a token id, a child group id, or "time:<n>" (only due by time)
    run_id  TEXT NOT NULL,
    due_at  REAL,            -- over at this time even without an event; NULL: only by event
    PRIMARY KEY (wait, part)
);
CREATE INDEX wait_parts_part ON wait_parts (part);
CREATE INDEX wait_parts_run ON wait_parts (run_id);

-- When the last unfinished child of a group that is part of a gather ends, the group's row goes
-- and the gather's run is settled: its wake time recomputed, queued if nothing undue is left.
CREATE TRIGGER runs_resolve_part AFTER UPDATE OF status ON runs
WHEN NEW.resolves IS NOT NULL
    AND NEW.status IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED')
    AND OLD.status NOT IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED')
    AND EXISTS (SELECT 1 FROM wait_parts WHERE part = NEW.resolves)
    AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.resolves = NEW.resolves
                    AND c.status NOT IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED'))
BEGIN
    DELETE FROM wait_parts WHERE part = NEW.resolves;
    UPDATE runs SET available_at = coalesce(
            (SELECT max(coalesce(w.due_at, 253402300799.0)) FROM wait_parts w
             WHERE w.wait = runs.waiting_for), NEW.updated_at)
    WHERE id = NEW.parent_id AND status = 'WAITING' AND waiting_for LIKE 'gather%';
    DELETE FROM wait_parts WHERE wait IN (
        SELECT waiting_for FROM runs WHERE id = NEW.parent_id AND status = 'WAITING'
          AND waiting_for LIKE 'gather%' AND available_at <= NEW.updated_at);
    INSERT INTO events (run_id, at, kind, attempt, name, data)
    SELECT p.id, NEW.updated_at, 'status', p.attempts, 'QUEUED',
           json_object('reason', 'what it waited for is done', 'from', 'WAITING')
    FROM runs p
    WHERE p.id = NEW.parent_id AND p.status = 'WAITING' AND p.waiting_for LIKE 'gather%'
      AND p.available_at <= NEW.updated_at;
    UPDATE runs SET status = 'QUEUED', available_at = NEW.updated_at, updated_at = NEW.updated_at
    WHERE id = NEW.parent_id AND status = 'WAITING' AND waiting_for LIKE 'gather%'
      AND available_at <= NEW.updated_at;
END;
