-- The initial schema (PostgreSQL). The same tables and columns as the SQLite dialect, so that
-- one set of row decoders serves both: times are BIGINT microseconds since the Unix epoch (UTC),
-- JSON columns hold pydantic/JSON text (cast to jsonb where a query looks inside), flags are
-- BOOLEAN.

CREATE TABLE runs (
    -- Strictly increasing and never reused (a sequence does not go back after a purge).
    seq              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
    created_at       BIGINT  NOT NULL,
    run_at           BIGINT,
    available_at     BIGINT  NOT NULL,  -- when a pending run may be claimed (run_at or retry)
    started_at       BIGINT,
    finished_at      BIGINT,
    next_attempt_at  BIGINT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    worker_id        TEXT,
    lease_expires_at BIGINT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    exit_code        INTEGER,
    failure_kind     TEXT,
    failure_message  TEXT,
    progress         TEXT,
    result           TEXT,
    partial          BOOLEAN NOT NULL DEFAULT FALSE,
    output_truncated BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (tenant, idempotency_key)
);

-- The ready queue, in claim order; partial so that finished history does not bloat it.
CREATE INDEX runs_ready ON runs (priority DESC, seq) WHERE status = 'pending';
CREATE INDEX runs_available ON runs (available_at) WHERE status = 'pending';
CREATE INDEX runs_leases ON runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX runs_worker ON runs (worker_id) WHERE status = 'running';
CREATE INDEX runs_tenant ON runs (tenant, seq);
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE attempts (
    run_id           TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    number           INTEGER NOT NULL,
    worker_id        TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    started_at       BIGINT  NOT NULL,
    finished_at      BIGINT,
    exit_code        INTEGER,
    signal           INTEGER,
    failure_kind     TEXT,
    failure_message  TEXT,
    output_truncated BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (run_id, number)
);

-- Log chunks; byte_offset counts bytes of the stream across all attempts.
CREATE TABLE logs (
    run_id      TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    stream      TEXT    NOT NULL CHECK (stream IN ('stdout', 'stderr')),
    byte_offset BIGINT  NOT NULL,
    attempt     INTEGER NOT NULL,
    data        BYTEA   NOT NULL,
    PRIMARY KEY (run_id, stream, byte_offset)
);

CREATE TABLE artifacts (
    run_id     TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    attempt    INTEGER NOT NULL,
    size       BIGINT  NOT NULL,
    sha256     TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (run_id, name)
);

CREATE TABLE workers (
    id           TEXT    PRIMARY KEY,
    hostname     TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    concurrency  INTEGER NOT NULL,
    started_at   BIGINT  NOT NULL,
    heartbeat_at BIGINT  NOT NULL,
    running      INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE tokens (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    token_hash TEXT    NOT NULL UNIQUE,
    role       TEXT    NOT NULL,
    tenant     TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    revoked    BOOLEAN NOT NULL DEFAULT FALSE
);
