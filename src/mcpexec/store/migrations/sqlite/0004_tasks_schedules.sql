-- Task definitions and schedules (issue 11).

-- Every version of every task: immutable rows, one per (tenant, name, version). "archived" is set
-- on all versions of a name at once; runs and versions stay readable.
CREATE TABLE tasks (
    tenant       TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    version      INTEGER NOT NULL CHECK (version >= 1),
    owner        TEXT    NOT NULL,
    content_hash TEXT    NOT NULL,
    definition   TEXT    NOT NULL,  -- canonical content plus the name (JSON)
    created_at   INTEGER NOT NULL,
    archived     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, name, version)
) WITHOUT ROWID;

CREATE TABLE schedules (
    id             TEXT    PRIMARY KEY,
    tenant         TEXT    NOT NULL,
    owner          TEXT    NOT NULL,
    task           TEXT    NOT NULL,
    task_version   INTEGER,          -- pinned version; NULL: the latest at each fire
    params         TEXT    NOT NULL DEFAULT '{}',
    spec           TEXT    NOT NULL,  -- ScheduleSpec (JSON)
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    handled_until  INTEGER NOT NULL,  -- fires up to here are handled (the step's cursor)
    next_fire_at   INTEGER,           -- NULL: nothing to do (paused, past end_at)
    last_fire_at   INTEGER,
    last_run_id    TEXT,
    last_outcome   TEXT,
    missed_count   INTEGER NOT NULL DEFAULT 0,
    skipped_count  INTEGER NOT NULL DEFAULT 0,
    buffered_fire  TEXT               -- buffer_one: the fire key waiting for the running run
);
-- The one query the scheduler loop runs on every wake-up.
CREATE INDEX schedules_next ON schedules (next_fire_at) WHERE next_fire_at IS NOT NULL;
CREATE INDEX schedules_tenant ON schedules (tenant, created_at);

-- One row per fire: the primary key is what makes each fire happen exactly once, however many
-- serve/scheduler processes share the store. Missed fires are counted, never inserted.
CREATE TABLE schedule_fires (
    schedule_id TEXT    NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    fire_key    TEXT    NOT NULL,
    fire_at     INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    run_id      TEXT,              -- no foreign key: the run may be purged first
    message     TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (schedule_id, fire_key)
) WITHOUT ROWID;
CREATE INDEX schedule_fires_time ON schedule_fires (schedule_id, fire_at);

-- Runs of a task: which version with which parameters, and the estimate given at submit.
ALTER TABLE runs ADD COLUMN task TEXT;
ALTER TABLE runs ADD COLUMN task_version INTEGER;
ALTER TABLE runs ADD COLUMN params TEXT;
ALTER TABLE runs ADD COLUMN estimated_duration_ms INTEGER;
CREATE INDEX runs_task ON runs (task, seq) WHERE task IS NOT NULL;
