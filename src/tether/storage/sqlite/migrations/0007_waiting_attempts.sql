-- A run coming back from a wait (waiting_for set) goes on with the attempt it was on: its claim
-- counts no new attempt (the wait no longer gives its attempt back), so a waiting run shows the
-- attempt it is on. Runs that parked under the old rule gave their attempt back: they are on the
-- next one.
UPDATE runs SET attempts = attempts + 1
WHERE waiting_for IS NOT NULL AND status IN ('WAITING', 'QUEUED', 'DELAYED');
