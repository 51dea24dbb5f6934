-- Tether schema, version 1 (SQLite). Times are seconds since the epoch (REAL).

CREATE TABLE runs (
    id                  TEXT PRIMARY KEY,
    task_id             TEXT NOT NULL,
    queue               TEXT NOT NULL,
    status              TEXT NOT NULL,
    payload             TEXT NOT NULL,
    output              TEXT,
    error               TEXT,
    state               TEXT,
    metadata            TEXT NOT NULL DEFAULT '{}',
    tags                TEXT NOT NULL DEFAULT '[]',
    idempotency_key     TEXT,
    idempotency_active  INTEGER NOT NULL DEFAULT 0,
    idempotency_expires_at REAL,
    concurrency_key     TEXT NOT NULL DEFAULT '',
    priority            INTEGER NOT NULL DEFAULT 0,
    attempts            INTEGER NOT NULL DEFAULT 0,
    max_attempts        INTEGER NOT NULL,
    retry               TEXT NOT NULL,
    max_duration        REAL,
    available_at        REAL NOT NULL,
    expires_at          REAL,
    lease_token         TEXT,
    attempt_started_at  REAL,
    lease_expires_at    REAL,
    worker_id           TEXT,
    parent_id           TEXT,
    root_id             TEXT,
    depth               INTEGER NOT NULL DEFAULT 0,
    created_at          REAL NOT NULL,
    updated_at          REAL NOT NULL,
    started_at          REAL,
    finished_at         REAL
);

CREATE UNIQUE INDEX runs_idempotency ON runs (task_id, idempotency_key) WHERE idempotency_active = 1;
CREATE INDEX runs_ready ON runs (priority DESC, available_at, id) WHERE status IN ('QUEUED', 'DELAYED');
CREATE INDEX runs_executing ON runs (queue, concurrency_key) WHERE status = 'EXECUTING';
CREATE INDEX runs_ttl ON runs (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX runs_status ON runs (status, id);
CREATE INDEX runs_task ON runs (task_id, id);
CREATE INDEX runs_parent ON runs (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE run_tags (
    tag     TEXT NOT NULL,
    run_id  TEXT NOT NULL,
    PRIMARY KEY (tag, run_id)
) WITHOUT ROWID;

-- One row per finished attempt (the attempt in progress lives on its run's row). An attempt's
-- start is the run's move to EXECUTING; `next_status` and `reason` record the transition that
-- ended it, so the hot path writes no separate event rows for either.
CREATE TABLE attempts (
    id           TEXT PRIMARY KEY,
    run_id       TEXT NOT NULL,
    number       INTEGER NOT NULL,
    worker_id    TEXT,
    status       TEXT NOT NULL,
    started_at   REAL NOT NULL,
    finished_at  REAL,
    error        TEXT,
    next_status  TEXT,
    reason       TEXT
);
CREATE INDEX attempts_run ON attempts (run_id, started_at);

CREATE TABLE steps (
    run_id       TEXT NOT NULL,
    key          TEXT NOT NULL,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL,
    output       TEXT,
    error        TEXT,
    attempt      INTEGER NOT NULL,
    started_at   REAL NOT NULL,
    finished_at  REAL,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;

CREATE TABLE events (
    id       INTEGER PRIMARY KEY,
    run_id   TEXT NOT NULL,
    at       REAL NOT NULL,
    kind     TEXT NOT NULL,
    attempt  INTEGER,
    name     TEXT NOT NULL DEFAULT '',
    data     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_run ON events (run_id, id);

CREATE TABLE tasks (
    id            TEXT PRIMARY KEY,
    queue         TEXT NOT NULL,
    options       TEXT NOT NULL,
    code_version  TEXT NOT NULL,
    updated_at    REAL NOT NULL
);

CREATE TABLE queues (
    name         TEXT PRIMARY KEY,
    concurrency  INTEGER,
    paused       INTEGER NOT NULL DEFAULT 0,
    updated_at   REAL NOT NULL
);

CREATE TABLE workers (
    id              TEXT PRIMARY KEY,
    hostname        TEXT NOT NULL,
    pid             INTEGER NOT NULL,
    queues          TEXT NOT NULL,
    concurrency     INTEGER NOT NULL,
    started_at      REAL NOT NULL,
    last_seen_at    REAL NOT NULL,
    stopped_at      REAL
);
