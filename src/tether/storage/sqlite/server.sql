-- The HTTP server's records (SQLite). The PostgreSQL twin is storage/postgres/server.sql.

-- name: insert_api_key
INSERT INTO api_keys (id, name, prefix, hash, created_at, last_used_at, revoked_at)
VALUES (:id, :name, :prefix, :hash, :created_at, :last_used_at, :revoked_at)

-- name: find_api_key
SELECT * FROM api_keys WHERE hash = ? AND revoked_at IS NULL

-- name: list_api_keys
SELECT * FROM api_keys ORDER BY created_at, id

-- name: api_keys_named
-- the keys a name may refer to: active ones first, then the most recently revoked
SELECT * FROM api_keys WHERE name = ?
ORDER BY revoked_at IS NOT NULL, revoked_at DESC, created_at, id

-- name: revoke_api_key
-- revoking twice keeps the first time
UPDATE api_keys SET revoked_at = coalesce(revoked_at, :now) WHERE id = :id RETURNING *

-- name: touch_api_key
UPDATE api_keys SET last_used_at = ? WHERE id = ?

-- name: insert_setting
INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING

-- name: get_setting
SELECT value FROM settings WHERE name = ?

-- name: insert_batch
INSERT INTO batches (id, run_count, idempotency_key, created_at, updated_at)
VALUES (:id, :run_count, :idempotency_key, :created_at, :updated_at)
ON CONFLICT DO NOTHING

-- name: get_batch
SELECT b.id, b.run_count, b.idempotency_key, b.created_at, b.updated_at,
    (SELECT count(*) FROM batch_items i WHERE i.batch_id = b.id) AS items_accepted
FROM batches b WHERE b.id = ?

-- name: find_batch
SELECT b.id, b.run_count, b.idempotency_key, b.created_at, b.updated_at,
    (SELECT count(*) FROM batch_items i WHERE i.batch_id = b.id) AS items_accepted
FROM batches b WHERE b.idempotency_key = ?

-- name: touch_batch
UPDATE batches SET updated_at = max(updated_at, ?) WHERE id = ?

-- name: batch_items_at
-- the runs already attached to these indexes (a JSON array of indexes)
SELECT i.idx, r.* FROM batch_items i JOIN runs r ON r.id = i.run_id
WHERE i.batch_id = ? AND i.idx IN (SELECT value FROM json_each(?))

-- name: insert_batch_item
INSERT INTO batch_items (batch_id, idx, run_id) VALUES (?, ?, ?)

-- name: batch_run_ids
SELECT run_id FROM batch_items WHERE batch_id = ? ORDER BY idx

-- name: batch_of
-- the earliest batch (ids are time-ordered): the one the run was created in
SELECT batch_id FROM batch_items WHERE run_id = ? ORDER BY batch_id LIMIT 1

-- name: get_reply
SELECT * FROM replies WHERE key = ?

-- name: insert_reply
INSERT INTO replies (key, status_code, body, created_at)
VALUES (:key, :status_code, :body, :created_at)
ON CONFLICT (key) DO NOTHING

-- name: prune_replies
DELETE FROM replies WHERE created_at < ?

-- name: put_packet
INSERT INTO packets (path, data, created_at) VALUES (?, ?, ?)
ON CONFLICT (path) DO UPDATE SET data = excluded.data, created_at = excluded.created_at

-- name: get_packet
SELECT data FROM packets WHERE path = ?

-- name: run_tags
SELECT tags FROM runs WHERE id = ?

-- name: set_tags
UPDATE runs SET tags = ?, updated_at = ? WHERE id = ? RETURNING *

-- name: set_metadata
UPDATE runs SET metadata = ?, updated_at = ? WHERE id = ? RETURNING *

-- name: queue_stats
-- reads only the waiting runs (runs_ready) and the executing ones (runs_executing, which holds
-- the queue): never the finished runs. INDEXED BY: once ANALYZE has run, the planner would walk
-- all of runs_queue to group without sorting. A run held in line (in_line) counts as waiting.
SELECT queue, sum(waiting) AS waiting, sum(executing) AS executing FROM (
    SELECT queue, count(*) AS waiting, 0 AS executing FROM runs INDEXED BY runs_ready
    WHERE status IN ('QUEUED', 'DELAYED') GROUP BY queue
    UNION ALL
    SELECT queue, sum(in_line), sum(1 - in_line) FROM runs INDEXED BY runs_executing
    WHERE status = 'EXECUTING' GROUP BY queue
) GROUP BY queue ORDER BY queue

-- name: queue_depths
-- the metrics' queue depth: each status through the partial index that holds only its runs
-- (runs_ready, runs_executing, runs_waiting), never the finished runs; INDEXED BY for the
-- reason queue_stats gives. For QUEUED, the oldest ready run's available_at too
SELECT queue, status, n, oldest FROM (
    SELECT queue, status, count(*) AS n,
        min(CASE WHEN status = 'QUEUED' THEN available_at END) AS oldest
    FROM runs INDEXED BY runs_ready WHERE status IN ('QUEUED', 'DELAYED') GROUP BY queue, status
    UNION ALL
    SELECT queue, 'EXECUTING', count(*), NULL FROM runs INDEXED BY runs_executing
    WHERE status = 'EXECUTING' GROUP BY queue
    UNION ALL
    SELECT queue, 'WAITING', count(*), NULL FROM runs INDEXED BY runs_waiting
    WHERE status = 'WAITING' GROUP BY queue
) ORDER BY queue, status
