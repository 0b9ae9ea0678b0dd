-- The durable event log (issue 17, "events"): one row per change of a run, schedule or
-- workflow run, read by GET /api/v1/events (Server-Sent Events, resumable by id).
-- Written by triggers in the transaction of the change, as run_counts are (0009): every path
-- that changes a run's status, including the ones added later, is logged. SQLite has one
-- writer at a time, so AUTOINCREMENT ids are in commit order (and never reused after a prune).
-- Times are integer microseconds of the database clock (the change happens now).

CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    tenant  TEXT    NOT NULL,
    owner   TEXT,               -- the principal owning the subject (submitters see their own)
    type    TEXT    NOT NULL,
    subject TEXT    NOT NULL,   -- run id, schedule id or workflow run id
    data    TEXT    NOT NULL DEFAULT '{}'
);
-- A tenant's reader scans its own events only.
CREATE INDEX events_tenant ON events (tenant, id);

CREATE TRIGGER events_run_insert AFTER INSERT ON runs
BEGIN
    INSERT INTO events (at, tenant, owner, type, subject, data) VALUES (
        CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER),
        NEW.tenant, NEW.owner, 'run.submitted', NEW.id,
        json_object('status', NEW.status, 'attempt', NEW.attempts, 'task', NEW.task,
                    'priority', NEW.priority));
END;

CREATE TRIGGER events_run_status AFTER UPDATE OF status ON runs
WHEN OLD.status IS NOT NEW.status
BEGIN
    INSERT INTO events (at, tenant, owner, type, subject, data) VALUES (
        CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER),
        NEW.tenant, NEW.owner,
        CASE NEW.status WHEN 'running' THEN 'run.started' WHEN 'pending' THEN 'run.retrying'
                        ELSE 'run.finished' END,
        NEW.id,
        json_object('status', NEW.status, 'attempt', NEW.attempts, 'worker_id', NEW.worker_id,
                    'exit_code', NEW.exit_code, 'failure_kind', NEW.failure_kind));
END;

CREATE TRIGGER events_run_cancel AFTER UPDATE OF cancel_requested ON runs
WHEN NEW.cancel_requested AND NOT OLD.cancel_requested AND NEW.status = 'running'
BEGIN
    INSERT INTO events (at, tenant, owner, type, subject, data) VALUES (
        CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER),
        NEW.tenant, NEW.owner, 'run.cancel_requested', NEW.id,
        json_object('status', NEW.status, 'attempt', NEW.attempts));
END;

CREATE TRIGGER events_schedule_insert AFTER INSERT ON schedules
BEGIN
    INSERT INTO events (at, tenant, owner, type, subject, data) VALUES (
        CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER),
        NEW.tenant, NEW.owner, 'schedule.created', NEW.id,
        json_object('task', NEW.task,
                    'paused', json(CASE WHEN json_extract(NEW.spec, '$.paused')
                                        THEN 'true' ELSE 'false' END)));
END;

CREATE TRIGGER events_schedule_update AFTER UPDATE OF spec, params, task_version ON schedules
WHEN OLD.spec IS NOT NEW.spec OR OLD.params IS NOT NEW.params
     OR OLD.task_version IS NOT NEW.task_version
BEGIN
    INSERT INTO events (at, tenant, owner, type, subject, data) VALUES (
        CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER),
        NEW.tenant, NEW.owner,
        CASE WHEN coalesce(json_extract(NEW.spec, '$.paused'), 0)
                  AND NOT coalesce(json_extract(OLD.spec, '$.paused'), 0) THEN 'schedule.paused'
             WHEN coalesce(json_extract(OLD.spec, '$.paused'), 0)
                  AND NOT coalesce(json_extract(NEW.spec, '$.paused'), 0) THEN 'schedule.resumed'
             ELSE 'schedule.updated' END,
        NEW.id, json_object('task', NEW.task));
END;

CREATE TRIGGER events_schedule_delete AFTER DELETE ON schedules
BEGIN
    INSERT INTO events (at, tenant, owner, type, subject, data) VALUES (
        CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER),
        OLD.tenant, OLD.owner, 'schedule.deleted', OLD.id, json_object('task', OLD.task));
END;

CREATE TRIGGER events_fire_insert AFTER INSERT ON schedule_fires
BEGIN
    INSERT INTO events (at, tenant, owner, type, subject, data) VALUES (
        CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER),
        coalesce((SELECT tenant FROM schedules WHERE id = NEW.schedule_id), ''),
        (SELECT owner FROM schedules WHERE id = NEW.schedule_id),
        'schedule.fired', NEW.schedule_id,
        json_object('fire_key', NEW.fire_key, 'outcome', NEW.outcome, 'run_id', NEW.run_id));
END;

CREATE TRIGGER events_fire_update AFTER UPDATE OF outcome ON schedule_fires
WHEN OLD.outcome IS NOT NEW.outcome
BEGIN
    INSERT INTO events (at, tenant, owner, type, subject, data) VALUES (
        CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER),
        coalesce((SELECT tenant FROM schedules WHERE id = NEW.schedule_id), ''),
        (SELECT owner FROM schedules WHERE id = NEW.schedule_id),
        'schedule.fired', NEW.schedule_id,
        json_object('fire_key', NEW.fire_key, 'outcome', NEW.outcome, 'run_id', NEW.run_id));
END;

CREATE TRIGGER events_workflow_status AFTER UPDATE OF status ON workflow_runs
WHEN OLD.status IS NOT NEW.status
BEGIN
    INSERT INTO events (at, tenant, owner, type, subject, data) VALUES (
        CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER),
        NEW.tenant, NEW.owner, 'workflow.status', NEW.id,
        json_object('workflow', NEW.workflow, 'status', NEW.status));
END;

CREATE TRIGGER events_workflow_event AFTER INSERT ON workflow_events
BEGIN
    INSERT INTO events (at, tenant, owner, type, subject, data)
    SELECT CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER),
           r.tenant, r.owner, 'workflow.' || NEW.kind, NEW.run_id,
           json_object('workflow', r.workflow, 'status', r.status, 'step', NEW.step)
    FROM workflow_runs r WHERE r.id = NEW.run_id;
END;
