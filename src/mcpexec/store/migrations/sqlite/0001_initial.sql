-- The initial schema. Times are INTEGER microseconds since the Unix epoch (UTC): exact and
-- cheap to compare. JSON columns hold pydantic/JSON text.

CREATE TABLE runs (
    -- seq is the rowid: strictly increasing and, with AUTOINCREMENT, never reused after a purge.
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,
    tenant           TEXT    NOT NULL,
    status           TEXT    NOT NULL
                     CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    priority         INTEGER NOT NULL,
    spec             TEXT    NOT NULL,
    retry            TEXT    NOT NULL,
    labels           TEXT    NOT NULL DEFAULT '{}',
    idempotency_key  TEXT,
    rerun_of         TEXT,   -- no foreign key: the original may be purged first
    created_at       INTEGER NOT NULL,
    run_at           INTEGER,
    available_at     INTEGER NOT NULL,  -- when a pending run may be claimed (run_at or retry)
    started_at       INTEGER,
    finished_at      INTEGER,
    next_attempt_at  INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    worker_id        TEXT,
    lease_expires_at INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    exit_code        INTEGER,
    failure_kind     TEXT,
    failure_message  TEXT,
    progress         TEXT,
    result           TEXT,
    partial          INTEGER NOT NULL DEFAULT 0,
    output_truncated INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tenant, idempotency_key)
);

-- The ready queue, in claim order; partial so that finished history does not bloat it.
CREATE INDEX runs_ready ON runs (priority DESC, seq) WHERE status = 'pending';
-- Delayed and retrying runs by the time they become available (next wake-up).
CREATE INDEX runs_available ON runs (available_at) WHERE status = 'pending';
-- The reaper's scan and expire_worker.
CREATE INDEX runs_leases ON runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX runs_worker ON runs (worker_id) WHERE status = 'running';
CREATE INDEX runs_tenant ON runs (tenant, seq);
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE attempts (
    run_id           TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    number           INTEGER NOT NULL,
    worker_id        TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    started_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    exit_code        INTEGER,
    signal           INTEGER,
    failure_kind     TEXT,
    failure_message  TEXT,
    output_truncated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, number)
) WITHOUT ROWID;

-- Log chunks; byte_offset counts bytes of the stream across all attempts.
CREATE TABLE logs (
    run_id      TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    stream      TEXT    NOT NULL CHECK (stream IN ('stdout', 'stderr')),
    byte_offset INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    data        BLOB    NOT NULL,
    PRIMARY KEY (run_id, stream, byte_offset)
);

CREATE TABLE artifacts (
    run_id     TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    attempt    INTEGER NOT NULL,
    size       INTEGER NOT NULL,
    sha256     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;

CREATE TABLE workers (
    id           TEXT    PRIMARY KEY,
    hostname     TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    concurrency  INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    running      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE tokens (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    token_hash TEXT    NOT NULL UNIQUE,
    role       TEXT    NOT NULL,
    tenant     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0
);
