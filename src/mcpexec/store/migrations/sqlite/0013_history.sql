-- History at scale (issue 17): every filter of the runs list answers from an index, and the
-- overview's charts read an hourly rollup instead of a million runs.
-- - runs.tool: `server.tool` of a tool run, set at insert, for the list's tool filter;
-- - runs_status, runs_created, runs_tool: the orders the list walks (see store/_run_list.py);
-- - run_labels: one row per label of a run (labels never change after insert), so a label
--   filter walks the runs carrying it, newest first, instead of every run; a NUL in a value
--   is kept as U+FFFF (json_each ends a value at a NUL, PostgreSQL's text refuses one);
-- - run_rollup: per tenant and hour, the runs that finished and histograms of their duration
--   and queue wait, kept by a trigger in the transaction of the finish (as run_counts, 0009).

ALTER TABLE runs ADD COLUMN tool TEXT;
UPDATE runs SET tool = json_extract(spec, '$.tool.server') || '.' || json_extract(spec, '$.tool.name')
WHERE json_extract(spec, '$.tool') IS NOT NULL;

CREATE INDEX runs_status ON runs (status, seq);
CREATE INDEX runs_created ON runs (created_at, seq);
CREATE INDEX runs_tool ON runs (tool, seq) WHERE tool IS NOT NULL;

CREATE TABLE run_labels (
    key   TEXT    NOT NULL,
    value TEXT    NOT NULL,
    seq   INTEGER NOT NULL,
    PRIMARY KEY (key, value, seq)
) WITHOUT ROWID;
-- The purge deletes a run's labels by its seq.
CREATE INDEX run_labels_seq ON run_labels (seq);

INSERT INTO run_labels (key, value, seq)
SELECT l.key, l.value, runs.seq
FROM runs, json_each(replace(runs.labels, '\u0000', '\uffff')) AS l;

CREATE TRIGGER run_labels_insert AFTER INSERT ON runs
WHEN NEW.labels <> '{}'
BEGIN
    INSERT INTO run_labels (key, value, seq)
    SELECT l.key, l.value, NEW.seq FROM json_each(replace(NEW.labels, '\u0000', '\uffff')) AS l;
END;

CREATE TRIGGER run_labels_delete AFTER DELETE ON runs
WHEN OLD.labels <> '{}'
BEGIN
    DELETE FROM run_labels WHERE seq = OLD.seq;
END;

-- hour: the start of the hour (microseconds); series: 'duration' (started -> finished) or
-- 'wait' (available -> first start); bucket: index into store/_rollup.py's bounds.
CREATE TABLE run_rollup (
    tenant TEXT    NOT NULL,
    hour   INTEGER NOT NULL,
    series TEXT    NOT NULL,
    bucket INTEGER NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (hour, tenant, series, bucket)
) WITHOUT ROWID;

-- Bucket bounds in microseconds, the same as metrics.DURATION_BUCKETS / WAIT_BUCKETS' union
-- (store/_rollup.py BOUNDS_US): 5 ms, 10, 25, 50, 100, 250, 500 ms, 1 s, 2.5, 5, 10, 30 s,
-- 1 min, 5, 15 min, 1 h, and more. The status series ('completed', 'failed', 'cancelled')
-- count finishes with bucket 0.
CREATE TRIGGER run_rollup_finish AFTER UPDATE OF status ON runs
WHEN NEW.status IN ('completed', 'failed', 'cancelled')
     AND OLD.status NOT IN ('completed', 'failed', 'cancelled')
     AND NEW.finished_at IS NOT NULL
BEGIN
    INSERT INTO run_rollup (tenant, hour, series, bucket, n)
    VALUES (NEW.tenant, NEW.finished_at - NEW.finished_at % 3600000000, NEW.status, 0, 1)
    ON CONFLICT (hour, tenant, series, bucket) DO UPDATE SET n = n + 1;
    INSERT INTO run_rollup (tenant, hour, series, bucket, n)
    SELECT NEW.tenant, NEW.finished_at - NEW.finished_at % 3600000000, s.series,
           CASE WHEN s.us <= 5000 THEN 0 WHEN s.us <= 10000 THEN 1 WHEN s.us <= 25000 THEN 2
                WHEN s.us <= 50000 THEN 3 WHEN s.us <= 100000 THEN 4
                WHEN s.us <= 250000 THEN 5 WHEN s.us <= 500000 THEN 6
                WHEN s.us <= 1000000 THEN 7 WHEN s.us <= 2500000 THEN 8
                WHEN s.us <= 5000000 THEN 9 WHEN s.us <= 10000000 THEN 10
                WHEN s.us <= 30000000 THEN 11 WHEN s.us <= 60000000 THEN 12
                WHEN s.us <= 300000000 THEN 13 WHEN s.us <= 900000000 THEN 14
                WHEN s.us <= 3600000000 THEN 15 ELSE 16 END,
           1
    FROM (SELECT 'duration' AS series, NEW.finished_at - NEW.started_at AS us
          UNION ALL
          SELECT 'wait', NEW.started_at - COALESCE(NEW.run_at, NEW.created_at)) AS s
    WHERE NEW.started_at IS NOT NULL
    ON CONFLICT (hour, tenant, series, bucket) DO UPDATE SET n = n + 1;
END;
