-- Workflows (issue 16): versioned definitions, durable workflow runs and their events. The same
-- tables and columns as the SQLite dialect's 0008 (BIGINT microsecond times, JSON text).

CREATE TABLE workflows (
    tenant       TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    version      INTEGER NOT NULL CHECK (version >= 1),
    owner        TEXT    NOT NULL,
    content_hash TEXT    NOT NULL,
    definition   TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    PRIMARY KEY (tenant, name, version)
);

CREATE TABLE workflow_runs (
    seq        BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    tenant     TEXT    NOT NULL,
    owner      TEXT    NOT NULL,
    workflow   TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    params     TEXT    NOT NULL DEFAULT '{}',
    status     TEXT    NOT NULL,
    state      TEXT    NOT NULL DEFAULT '{}',
    revision   INTEGER NOT NULL DEFAULT 1,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);
CREATE INDEX workflow_runs_status ON workflow_runs (status, seq);
CREATE INDEX workflow_runs_tenant ON workflow_runs (tenant, workflow, seq);

CREATE TABLE workflow_events (
    seq     BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id  TEXT    NOT NULL,
    at      BIGINT  NOT NULL,
    kind    TEXT    NOT NULL,
    step    TEXT,
    detail  TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX workflow_events_run ON workflow_events (run_id, seq);
