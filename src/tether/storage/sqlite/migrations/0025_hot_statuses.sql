-- runs_status (0001: status, id) leaves out the two statuses every run passes through in a hurry
-- (issue 19). A run was entered at its trigger and moved at its claim and at its end: a page of
-- the index in each of the three commits. It now enters once, at its end (or as it waits or is
-- delayed). Lists and counts of QUEUED and EXECUTING runs read the partial indexes that hold
-- exactly those (runs_ready, runs_executing) or walk the runs newest first.
DROP INDEX IF EXISTS runs_status;
CREATE INDEX runs_status ON runs (status, id) WHERE status NOT IN ('QUEUED', 'EXECUTING');
