-- Several waits at once (asyncio.gather of ctx waits, SyncContext.parallel): the run parks
-- once, with `waiting_for` = the gather's id ("gather_<run>_<first key>.<lease token>"), and
-- one row here per thing it still waits for. An event (a token completed, a child group's last
-- run ended) deletes the rows naming it; a row with `due_at` is also over by time (a sleep, a
-- token's timeout). The run's available_at is the latest due_at of its rows (9999-12-31 while a
-- row has none), so promote_delayed wakes it by time as any sleeper; it is queued at once when
-- no row is left that is not due. Single waits never write here.
CREATE TABLE wait_parts (
    wait    text NOT NULL,   -- the gather's id, the run's waiting_for
    part    text NOT NULL,   -- a token id, a child group id, or "time:<n>" (only due by time)
    run_id  text NOT NULL,
    due_at  double precision, -- over at this time even without an event; NULL: only by event
    PRIMARY KEY (wait, part)
);
CREATE INDEX wait_parts_part ON wait_parts (part);
CREATE INDEX wait_parts_run ON wait_parts (run_id);

-- When the last unfinished child of a group that is part of a gather ends, the group's row goes
-- and the gather's run is settled (its wake time recomputed, queued if nothing undue is left),
-- in the same transaction. The parent row is locked first, as tether_resolve_group does, and
-- what follows reads afresh. A parent that is executing and not on this gather may be about to
-- park on it (its parts stored, the commit that moves it to WAITING under way, computed from
-- what it saw before): its row is left for resolve_waits, which settles it within a second of
-- the park.
CREATE FUNCTION tether_resolve_part() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    parent runs;
    gather record;
    due double precision;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM wait_parts WHERE part = NEW.resolves) THEN
        RETURN NULL;
    END IF;
    SELECT * INTO parent FROM runs WHERE id = NEW.parent_id FOR UPDATE;
    IF EXISTS (SELECT 1 FROM runs c WHERE c.resolves = NEW.resolves AND c.id <> NEW.id
               AND c.status NOT IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED'))
    THEN
        RETURN NULL;
    END IF;
    FOR gather IN SELECT p.wait FROM wait_parts p WHERE p.part = NEW.resolves LOOP
        CONTINUE WHEN parent.status = 'EXECUTING'
            AND parent.waiting_for IS DISTINCT FROM gather.wait;
        DELETE FROM wait_parts p WHERE p.wait = gather.wait AND p.part = NEW.resolves;
        CONTINUE WHEN parent.status <> 'WAITING' OR parent.waiting_for <> gather.wait;
        SELECT coalesce(max(coalesce(w.due_at, 253402300799.0)), NEW.updated_at) INTO due
        FROM wait_parts w WHERE w.wait = gather.wait;
        IF due <= NEW.updated_at THEN
            DELETE FROM wait_parts p WHERE p.wait = gather.wait;
            UPDATE runs SET status = 'QUEUED', available_at = NEW.updated_at,
                updated_at = NEW.updated_at
            WHERE id = parent.id;
            INSERT INTO events (run_id, at, kind, attempt, name, data)
            VALUES (parent.id, NEW.updated_at, 'status', parent.attempts, 'QUEUED',
                    json_build_object('reason', 'what it waited for is done',
                                      'from', 'WAITING')::text);
            PERFORM pg_notify('tether_' || current_schema() || '_workers', 'runs');
        ELSE
            UPDATE runs SET available_at = due WHERE id = parent.id;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER runs_resolve_part AFTER UPDATE OF status ON runs FOR EACH ROW
WHEN (NEW.resolves IS NOT NULL
      AND NEW.status IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED')
      AND OLD.status NOT IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT', 'EXPIRED'))
EXECUTE FUNCTION tether_resolve_part();
