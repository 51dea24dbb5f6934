-- A run coming back from a wait (waiting_for set) goes on with the attempt it was on: its claim
-- counts no new attempt (the wait no longer gives its attempt back), so a waiting run shows the
-- attempt it is on.
--
-- Stored times follow the order of commits: a slot row records when it was last freed (by the
-- statements that end attempts), and a run that takes it starts no earlier than that, even
-- when the claiming worker read its clock before the attempt that held the slot ended (times
-- are read before a statement is sent). So runs' stored start and end times never show more
-- runs of a queue executing than its limit.
ALTER TABLE queue_slots ADD COLUMN freed_at double precision;

-- runs that parked under the old rule gave their attempt back: they are on the next one
UPDATE runs SET attempts = attempts + 1
WHERE waiting_for IS NOT NULL AND status IN ('WAITING', 'QUEUED', 'DELAYED');

-- (tether_claim applies both rules from migration 0009 on, which also records versions)
