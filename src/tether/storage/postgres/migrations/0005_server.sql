-- The HTTP server (PostgreSQL): API keys, settings, batches of runs triggered over HTTP, replies
-- kept for retried requests, uploaded payload packets. Times are seconds since the epoch (double
-- precision), as in the SQLite backend.

-- An API key is stored as the SHA-256 of its secret; `prefix` (the secret's first characters)
-- tells keys apart in listings. A revoked key keeps its row, with the time it was revoked.
CREATE TABLE api_keys (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    prefix        text NOT NULL,
    hash          text NOT NULL UNIQUE,
    created_at    double precision NOT NULL,
    last_used_at  double precision,
    revoked_at    double precision
);

-- Values the server creates once and every process then shares (the signing secret).
CREATE TABLE settings (
    name   text PRIMARY KEY,
    value  text NOT NULL
);

-- A batch expects `run_count` items; each item's run is attached by index, so an item sent
-- twice (a client re-sends the whole stream when it retries) creates one run.
CREATE TABLE batches (
    id               text PRIMARY KEY,
    run_count        integer NOT NULL,
    idempotency_key  text UNIQUE,
    created_at       double precision NOT NULL,
    updated_at       double precision NOT NULL
);

CREATE TABLE batch_items (
    batch_id  text NOT NULL,
    idx       integer NOT NULL,
    run_id    text NOT NULL,
    PRIMARY KEY (batch_id, idx)
);
CREATE INDEX batch_items_run ON batch_items (run_id);

-- The answer to a POST that carried a request idempotency key, replayed when the key comes again.
CREATE TABLE replies (
    key          text PRIMARY KEY,
    status_code  integer NOT NULL,
    body         text NOT NULL,
    created_at   double precision NOT NULL
);
CREATE INDEX replies_created ON replies (created_at);

-- Payloads too large for a request body, uploaded first and referred to by path.
CREATE TABLE packets (
    path        text PRIMARY KEY,
    data        bytea NOT NULL,
    created_at  double precision NOT NULL
);

-- Listing the runs of one queue, newest first.
CREATE INDEX runs_queue ON runs (queue, id);
