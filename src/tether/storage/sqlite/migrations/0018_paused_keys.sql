-- Back-pressure (issue 22): a queue's key paused in paused_keys is claimed by no claim
-- (storage/sqlite/claim.py, take_place in queries.sql). An index for the pauses' ends (the
-- workers' next wake-up, deleting the ended ones).
CREATE INDEX paused_keys_until ON paused_keys (until);
