-- runs_task and runs_queue (0001, 0005: the lists by task and by queue) leave out the runs in
-- line, QUEUED and DELAYED (issue 19). A trigger added an entry to both; now a run enters them
-- at its claim (an update that is not HOT adds one anyway). A list by task or queue reads the
-- runs that left the line through these, newest first, and the runs in line through runs_ready
-- or runs_keys, which hold exactly those (storage/run_filter.py).
DROP INDEX IF EXISTS runs_task;
CREATE INDEX runs_task ON runs (task_id, id) WHERE status NOT IN ('QUEUED', 'DELAYED');
DROP INDEX IF EXISTS runs_queue;
CREATE INDEX runs_queue ON runs (queue, id) WHERE status NOT IN ('QUEUED', 'DELAYED');
