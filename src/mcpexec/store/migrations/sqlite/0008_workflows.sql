-- Workflows (issue 16): versioned definitions, durable workflow runs and their events.

-- Every version of every workflow: immutable rows, one per (tenant, name, version).
CREATE TABLE workflows (
    tenant       TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    version      INTEGER NOT NULL CHECK (version >= 1),
    owner        TEXT    NOT NULL,
    content_hash TEXT    NOT NULL,
    definition   TEXT    NOT NULL,  -- canonical definition (JSON)
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant, name, version)
) WITHOUT ROWID;

-- One row per workflow run; "state" is the engine's JSON, replaced by compare-and-set on
-- "revision".
CREATE TABLE workflow_runs (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE,
    tenant     TEXT    NOT NULL,
    owner      TEXT    NOT NULL,
    workflow   TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    params     TEXT    NOT NULL DEFAULT '{}',
    status     TEXT    NOT NULL,
    state      TEXT    NOT NULL DEFAULT '{}',
    revision   INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX workflow_runs_status ON workflow_runs (status, seq);
CREATE INDEX workflow_runs_tenant ON workflow_runs (tenant, workflow, seq);

CREATE TABLE workflow_events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id  TEXT    NOT NULL,
    at      INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    step    TEXT,
    detail  TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX workflow_events_run ON workflow_events (run_id, seq);
