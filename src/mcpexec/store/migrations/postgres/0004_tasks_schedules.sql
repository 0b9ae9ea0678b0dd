-- Task definitions and schedules (issue 11).

CREATE TABLE tasks (
    tenant       TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    version      INTEGER NOT NULL CHECK (version >= 1),
    owner        TEXT    NOT NULL,
    content_hash TEXT    NOT NULL,
    definition   TEXT    NOT NULL,  -- canonical content plus the name (JSON)
    created_at   BIGINT  NOT NULL,
    archived     BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (tenant, name, version)
);

CREATE TABLE schedules (
    id             TEXT    PRIMARY KEY,
    tenant         TEXT    NOT NULL,
    owner          TEXT    NOT NULL,
    task           TEXT    NOT NULL,
    task_version   INTEGER,
    params         TEXT    NOT NULL DEFAULT '{}',
    spec           TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    handled_until  BIGINT  NOT NULL,
    next_fire_at   BIGINT,
    last_fire_at   BIGINT,
    last_run_id    TEXT,
    last_outcome   TEXT,
    missed_count   INTEGER NOT NULL DEFAULT 0,
    skipped_count  INTEGER NOT NULL DEFAULT 0,
    buffered_fire  TEXT
);
CREATE INDEX schedules_next ON schedules (next_fire_at) WHERE next_fire_at IS NOT NULL;
CREATE INDEX schedules_tenant ON schedules (tenant, created_at);

-- One row per fire: the primary key makes each fire happen once, however many schedulers run.
CREATE TABLE schedule_fires (
    schedule_id TEXT    NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    fire_key    TEXT    NOT NULL,
    fire_at     BIGINT  NOT NULL,
    outcome     TEXT    NOT NULL,
    run_id      TEXT,
    message     TEXT,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (schedule_id, fire_key)
);
CREATE INDEX schedule_fires_time ON schedule_fires (schedule_id, fire_at);

ALTER TABLE runs ADD COLUMN task TEXT;
ALTER TABLE runs ADD COLUMN task_version INTEGER;
ALTER TABLE runs ADD COLUMN params TEXT;
ALTER TABLE runs ADD COLUMN estimated_duration_ms BIGINT;
CREATE INDEX runs_task ON runs (task, seq) WHERE task IS NOT NULL;
