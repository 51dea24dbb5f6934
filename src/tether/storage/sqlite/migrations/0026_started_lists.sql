-- runs_task and runs_queue (0001, 0005: the lists by task and by queue) leave out the runs in
-- line, QUEUED and DELAYED (issue 19). Each trigger wrote a page of both (2.4 of its 7.3 WAL
-- pages); now the claim enters the run, and a batch of claims shares the pages. A list by task
-- or queue reads the runs that left the line through these, newest first, and the runs in line
-- through runs_ready or runs_keys, which hold exactly those (storage/run_filter.py).
DROP INDEX IF EXISTS runs_task;
CREATE INDEX runs_task ON runs (task_id, id) WHERE status NOT IN ('QUEUED', 'DELAYED');
DROP INDEX IF EXISTS runs_queue;
CREATE INDEX runs_queue ON runs (queue, id) WHERE status NOT IN ('QUEUED', 'DELAYED');
