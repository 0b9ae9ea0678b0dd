-- History at scale (issue 17); the same tables and indexes as the SQLite dialect's 0013:
-- runs.tool for the tool filter, the orders the runs list walks (store/_run_list.py), one row
-- per label of a run, and the hourly rollup behind the overview's charts.

ALTER TABLE runs ADD COLUMN tool TEXT;
UPDATE runs
SET tool = (replace(spec, '\u0000', '\uffff')::jsonb #>> '{tool,server}') || '.'
           || (replace(spec, '\u0000', '\uffff')::jsonb #>> '{tool,name}')
WHERE replace(spec, '\u0000', '\uffff')::jsonb ? 'tool';

CREATE INDEX runs_status ON runs (status, seq);
CREATE INDEX runs_created ON runs (created_at, seq);
CREATE INDEX runs_tool ON runs (tool, seq) WHERE tool IS NOT NULL;

-- Values as the list compares them: a NUL (which text refuses) as U+FFFF.
CREATE TABLE run_labels (
    key   TEXT   NOT NULL,
    value TEXT   NOT NULL,
    seq   BIGINT NOT NULL,
    PRIMARY KEY (key, value, seq)
);
CREATE INDEX run_labels_seq ON run_labels (seq);

INSERT INTO run_labels (key, value, seq)
SELECT l.key, l.value, runs.seq
FROM runs, jsonb_each_text(replace(runs.labels, '\u0000', '\uffff')::jsonb) AS l;

CREATE FUNCTION mcpexec_run_labels() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO run_labels (key, value, seq)
        SELECT l.key, l.value, NEW.seq
        FROM jsonb_each_text(replace(NEW.labels, '\u0000', '\uffff')::jsonb) AS l;
    ELSE
        DELETE FROM run_labels WHERE seq = OLD.seq;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER run_labels_insert AFTER INSERT ON runs
FOR EACH ROW WHEN (NEW.labels <> '{}') EXECUTE FUNCTION mcpexec_run_labels();
CREATE TRIGGER run_labels_delete AFTER DELETE ON runs
FOR EACH ROW WHEN (OLD.labels <> '{}') EXECUTE FUNCTION mcpexec_run_labels();

CREATE TABLE run_rollup (
    tenant TEXT    NOT NULL,
    hour   BIGINT  NOT NULL,
    series TEXT    NOT NULL,
    bucket INTEGER NOT NULL,
    n      BIGINT  NOT NULL,
    PRIMARY KEY (hour, tenant, series, bucket)
);

-- Bounds as in store/_rollup.py BOUNDS_US.
CREATE FUNCTION mcpexec_rollup_bucket(us BIGINT) RETURNS INTEGER
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN us <= 5000 THEN 0 WHEN us <= 10000 THEN 1 WHEN us <= 25000 THEN 2
                WHEN us <= 50000 THEN 3 WHEN us <= 100000 THEN 4
                WHEN us <= 250000 THEN 5 WHEN us <= 500000 THEN 6
                WHEN us <= 1000000 THEN 7 WHEN us <= 2500000 THEN 8
                WHEN us <= 5000000 THEN 9 WHEN us <= 10000000 THEN 10
                WHEN us <= 30000000 THEN 11 WHEN us <= 60000000 THEN 12
                WHEN us <= 300000000 THEN 13 WHEN us <= 900000000 THEN 14
                WHEN us <= 3600000000 THEN 15 ELSE 16 END;
$$;

-- Deferred to COMMIT and under the event log's advisory lock (0011): finishing transactions
-- update a tenant's rollup rows one at a time, so two that finish several runs each can
-- never lock the same rows in opposite orders.
CREATE FUNCTION mcpexec_run_rollup() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    h BIGINT := NEW.finished_at - NEW.finished_at % 3600000000;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('mcpexec.events', 0));
    INSERT INTO run_rollup (tenant, hour, series, bucket, n)
    VALUES (NEW.tenant, h, NEW.status, 0, 1)
    ON CONFLICT (hour, tenant, series, bucket) DO UPDATE SET n = run_rollup.n + 1;
    IF NEW.started_at IS NOT NULL THEN
        INSERT INTO run_rollup (tenant, hour, series, bucket, n)
        VALUES (NEW.tenant, h, 'duration', mcpexec_rollup_bucket(NEW.finished_at - NEW.started_at), 1),
               (NEW.tenant, h, 'wait',
                mcpexec_rollup_bucket(NEW.started_at - COALESCE(NEW.run_at, NEW.created_at)), 1)
        ON CONFLICT (hour, tenant, series, bucket) DO UPDATE SET n = run_rollup.n + 1;
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER run_rollup AFTER UPDATE OF status ON runs
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
WHEN (NEW.status IN ('completed', 'failed', 'cancelled')
      AND OLD.status NOT IN ('completed', 'failed', 'cancelled')
      AND NEW.finished_at IS NOT NULL)
EXECUTE FUNCTION mcpexec_run_rollup();
