-- The HTTP server's records (PostgreSQL). The SQLite twin is storage/sqlite/server.sql.

-- name: insert_api_key
INSERT INTO api_keys (id, name, prefix, hash, created_at, last_used_at, revoked_at)
VALUES (%(id)s, %(name)s, %(prefix)s, %(hash)s, %(created_at)s, %(last_used_at)s, %(revoked_at)s)

-- name: find_api_key
SELECT * FROM api_keys WHERE hash = %s AND revoked_at IS NULL

-- name: list_api_keys
SELECT * FROM api_keys ORDER BY created_at, id

-- name: api_keys_named
-- the keys a name may refer to: active ones first, then the most recently revoked
SELECT * FROM api_keys WHERE name = %s
ORDER BY revoked_at IS NOT NULL, revoked_at DESC, created_at, id

-- name: revoke_api_key
-- revoking twice keeps the first time
UPDATE api_keys SET revoked_at = coalesce(revoked_at, %(now)s) WHERE id = %(id)s RETURNING *

-- name: touch_api_key
UPDATE api_keys SET last_used_at = %s WHERE id = %s

-- name: insert_setting
INSERT INTO settings (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING

-- name: get_setting
SELECT value FROM settings WHERE name = %s

-- name: insert_batch
INSERT INTO batches (id, run_count, idempotency_key, created_at, updated_at)
VALUES (%(id)s, %(run_count)s, %(idempotency_key)s, %(created_at)s, %(updated_at)s)
ON CONFLICT DO NOTHING

-- name: get_batch
SELECT b.id, b.run_count, b.idempotency_key, b.created_at, b.updated_at,
    (SELECT count(*) FROM batch_items i WHERE i.batch_id = b.id) AS items_accepted
FROM batches b WHERE b.id = %s

-- name: find_batch
SELECT b.id, b.run_count, b.idempotency_key, b.created_at, b.updated_at,
    (SELECT count(*) FROM batch_items i WHERE i.batch_id = b.id) AS items_accepted
FROM batches b WHERE b.idempotency_key = %s

-- name: touch_batch
-- also locks the batch's row: calls adding runs to one batch take turns
UPDATE batches SET updated_at = greatest(updated_at, %s) WHERE id = %s

-- name: batch_items_at
-- the runs already attached to these indexes
SELECT i.idx, r.* FROM batch_items i JOIN runs r ON r.id = i.run_id
WHERE i.batch_id = %s AND i.idx = ANY (%s)

-- name: insert_batch_item
INSERT INTO batch_items (batch_id, idx, run_id) VALUES (%s, %s, %s)

-- name: batch_run_ids
SELECT run_id FROM batch_items WHERE batch_id = %s ORDER BY idx

-- name: batch_of
-- the earliest batch (ids are time-ordered): the one the run was created in
SELECT batch_id FROM batch_items WHERE run_id = %s ORDER BY batch_id LIMIT 1

-- name: get_reply
SELECT * FROM replies WHERE key = %s

-- name: insert_reply
INSERT INTO replies (key, status_code, body, created_at)
VALUES (%(key)s, %(status_code)s, %(body)s, %(created_at)s)
ON CONFLICT (key) DO NOTHING

-- name: prune_replies
DELETE FROM replies WHERE created_at < %s

-- name: put_packet
INSERT INTO packets (path, data, created_at) VALUES (%s, %s, %s)
ON CONFLICT (path) DO UPDATE SET data = excluded.data, created_at = excluded.created_at

-- name: get_packet
SELECT data FROM packets WHERE path = %s

-- name: run_tags
SELECT tags FROM runs WHERE id = %s FOR UPDATE

-- name: set_tags
UPDATE runs SET tags = %s, updated_at = %s WHERE id = %s RETURNING *

-- name: set_metadata
UPDATE runs SET metadata = %s, updated_at = %s WHERE id = %s RETURNING *

-- name: queue_stats
-- reads only the waiting runs (runs_ready) and the executing ones (runs_executing): never the
-- finished runs; a run a worker holds in line for a limited queue (EXECUTING without a slot yet)
-- counts as waiting. One part per partial index: a status list spanning them would be read from
-- the whole table
SELECT queue, count(*) FILTER (WHERE NOT running) AS waiting,
    count(*) FILTER (WHERE running) AS executing
FROM (
    SELECT r.queue, false AS running FROM runs r WHERE r.status IN ('QUEUED', 'DELAYED')
    UNION ALL
    SELECT r.queue, q.concurrency IS NULL
        OR EXISTS (SELECT 1 FROM queue_slots s WHERE s.run_id = r.id)
    FROM runs r LEFT JOIN queues q ON q.name = r.queue
    WHERE r.status = 'EXECUTING'
) v
GROUP BY queue ORDER BY queue

-- name: queue_depths
-- the metrics' queue depth: each status through the partial index that holds only its runs
-- (runs_ready, runs_executing, runs_waiting), never the finished ones. For QUEUED, the oldest
-- ready run's available_at too
SELECT queue, status, count(*) AS n,
    min(available_at) FILTER (WHERE status = 'QUEUED') AS oldest
FROM runs WHERE status IN ('QUEUED', 'DELAYED') GROUP BY queue, status
UNION ALL
SELECT queue, status, count(*), NULL FROM runs WHERE status = 'EXECUTING' GROUP BY queue, status
UNION ALL
SELECT queue, status, count(*), NULL FROM runs WHERE status = 'WAITING' GROUP BY queue, status
ORDER BY queue, status
