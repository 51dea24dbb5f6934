-- A token's idempotency key may expire (`idempotencyKeyTTL`, `idempotency_key_ttl`): creating a
-- token with an expired key releases it (idempotency_active back to 0, the key kept for reading)
-- and makes a new token. Keys stored before this migration never expire.
ALTER TABLE waitpoints ADD COLUMN idempotency_expires_at REAL;
ALTER TABLE waitpoints ADD COLUMN idempotency_active INTEGER NOT NULL DEFAULT 0;
UPDATE waitpoints SET idempotency_active = 1 WHERE idempotency_key IS NOT NULL;
DROP INDEX waitpoints_idempotency;
CREATE UNIQUE INDEX waitpoints_idempotency ON waitpoints (idempotency_key)
    WHERE idempotency_active = 1;
