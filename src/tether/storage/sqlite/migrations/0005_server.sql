-- The HTTP server (SQLite): API keys, settings, batches of runs triggered over HTTP, replies kept
-- for retried requests, uploaded payload packets. Times are seconds since the epoch (REAL).

-- An API key is stored as the SHA-256 of its secret; `prefix` (the secret's first characters)
-- tells keys apart in listings. A revoked key keeps its row, with the time it was revoked.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    prefix        TEXT NOT NULL,
    hash          TEXT NOT NULL UNIQUE,
    created_at    REAL NOT NULL,
    last_used_at  REAL,
    revoked_at    REAL
);

-- Values the server creates once and every process then shares (the signing secret).
CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- A batch expects `run_count` items; each item's run is attached by index, so an item sent
-- twice (a client re-sends the whole stream when it retries) creates one run.
CREATE TABLE batches (
    id               TEXT PRIMARY KEY,
    run_count        INTEGER NOT NULL,
    idempotency_key  TEXT UNIQUE,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL
);

CREATE TABLE batch_items (
    batch_id  TEXT NOT NULL,
    idx       INTEGER NOT NULL,
    run_id    TEXT NOT NULL,
    PRIMARY KEY (batch_id, idx)
) WITHOUT ROWID;
CREATE INDEX batch_items_run ON batch_items (run_id);

-- The answer to a POST that carried a request idempotency key, replayed when the key comes again.
CREATE TABLE replies (
    key          TEXT PRIMARY KEY,
    status_code  INTEGER NOT NULL,
    body         TEXT NOT NULL,
    created_at   REAL NOT NULL
);
CREATE INDEX replies_created ON replies (created_at);

-- Payloads too large for a request body, uploaded first and referred to by path.
CREATE TABLE packets (
    path        TEXT PRIMARY KEY,
    data        BLOB NOT NULL,
    created_at  REAL NOT NULL
);

-- Listing the runs of one queue, newest first.
CREATE INDEX runs_queue ON runs (queue, id);
