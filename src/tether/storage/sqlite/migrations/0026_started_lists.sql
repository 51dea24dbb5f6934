-- runs_task and runs_queue (0001, 0005: the lists by task and by queue) leave out the runs in
-- line, QUEUED and DELAYED (issue 19). Each trigger wrote a page of both (2.4 of its 7.3 WAL
-- pages); now the claim enters the run, and a batch of claims shares the pages. A list by task
-- or queue reads the runs that left the line through these, newest first, and the runs in line
-- through runs_keys, which holds exactly those (storage/run_filter.py): it now ends with the
-- task too, so that part finds a task's runs in line without reading their rows.
DROP INDEX IF EXISTS runs_task;
CREATE INDEX runs_task ON runs (task_id, id) WHERE status NOT IN ('QUEUED', 'DELAYED');
DROP INDEX IF EXISTS runs_queue;
CREATE INDEX runs_queue ON runs (queue, id) WHERE status NOT IN ('QUEUED', 'DELAYED');
DROP INDEX IF EXISTS runs_keys;
CREATE INDEX runs_keys ON runs (queue, concurrency_key, priority DESC, available_at, id, status,
    task_id) WHERE status IN ('QUEUED', 'DELAYED');
