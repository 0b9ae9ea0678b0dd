-- The durable event log (issue 17, "events"); the same columns as the SQLite dialect's 0011,
-- written by triggers in the transaction of each change of a run, schedule or workflow run.
-- Ids in commit order (see store/_pg_events.py): the triggers are deferred constraint triggers,
-- so they run at COMMIT, after the transaction's other work, and each takes a
-- transaction-scoped advisory lock before it inserts: transactions that log events commit one
-- at a time from there on, and no reader ever sees id N+1 before id N.
-- Times are integer microseconds of the database clock.

CREATE TABLE events (
    id      BIGINT PRIMARY KEY,
    at      BIGINT NOT NULL,
    tenant  TEXT   NOT NULL,
    owner   TEXT,               -- the principal owning the subject (submitters see their own)
    type    TEXT   NOT NULL,
    subject TEXT   NOT NULL,    -- run id, schedule id or workflow run id
    data    TEXT   NOT NULL DEFAULT '{}'
);
CREATE INDEX events_tenant ON events (tenant, id);
CREATE SEQUENCE events_id AS BIGINT;

CREATE FUNCTION mcpexec_event(t TEXT, o TEXT, k TEXT, s TEXT, d JSON) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('mcpexec.events', 0));
    INSERT INTO events (id, at, tenant, owner, type, subject, data)
    VALUES (nextval('events_id'), (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT,
            t, o, k, s, d::TEXT);
END;
$$;

CREATE FUNCTION mcpexec_run_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM mcpexec_event(NEW.tenant, NEW.owner, 'run.submitted', NEW.id,
            json_build_object('status', NEW.status, 'attempt', NEW.attempts, 'task', NEW.task,
                              'priority', NEW.priority));
    ELSIF OLD.status IS DISTINCT FROM NEW.status THEN
        PERFORM mcpexec_event(NEW.tenant, NEW.owner,
            CASE NEW.status WHEN 'running' THEN 'run.started' WHEN 'pending' THEN 'run.retrying'
                            ELSE 'run.finished' END,
            NEW.id,
            json_build_object('status', NEW.status, 'attempt', NEW.attempts,
                              'worker_id', NEW.worker_id, 'exit_code', NEW.exit_code,
                              'failure_kind', NEW.failure_kind));
    ELSIF NEW.cancel_requested AND NOT OLD.cancel_requested AND NEW.status = 'running' THEN
        PERFORM mcpexec_event(NEW.tenant, NEW.owner, 'run.cancel_requested', NEW.id,
            json_build_object('status', NEW.status, 'attempt', NEW.attempts));
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER run_events AFTER INSERT OR UPDATE OF status, cancel_requested ON runs
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION mcpexec_run_events();

CREATE FUNCTION mcpexec_schedule_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    was BOOLEAN;
    now_paused BOOLEAN;
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM mcpexec_event(NEW.tenant, NEW.owner, 'schedule.created', NEW.id,
            json_build_object('task', NEW.task,
                              'paused', coalesce((NEW.spec::jsonb ->> 'paused')::BOOLEAN, FALSE)));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM mcpexec_event(OLD.tenant, OLD.owner, 'schedule.deleted', OLD.id,
            json_build_object('task', OLD.task));
    ELSIF OLD.spec IS DISTINCT FROM NEW.spec OR OLD.params IS DISTINCT FROM NEW.params
          OR OLD.task_version IS DISTINCT FROM NEW.task_version THEN
        was := coalesce((OLD.spec::jsonb ->> 'paused')::BOOLEAN, FALSE);
        now_paused := coalesce((NEW.spec::jsonb ->> 'paused')::BOOLEAN, FALSE);
        PERFORM mcpexec_event(NEW.tenant, NEW.owner,
            CASE WHEN now_paused AND NOT was THEN 'schedule.paused'
                 WHEN was AND NOT now_paused THEN 'schedule.resumed'
                 ELSE 'schedule.updated' END,
            NEW.id, json_build_object('task', NEW.task));
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER schedule_events AFTER INSERT OR DELETE OR UPDATE OF spec, params, task_version
ON schedules DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION mcpexec_schedule_events();

CREATE FUNCTION mcpexec_fire_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR OLD.outcome IS DISTINCT FROM NEW.outcome THEN
        PERFORM mcpexec_event(
            coalesce((SELECT tenant FROM schedules WHERE id = NEW.schedule_id), ''),
            (SELECT owner FROM schedules WHERE id = NEW.schedule_id),
            'schedule.fired', NEW.schedule_id,
            json_build_object('fire_key', NEW.fire_key, 'outcome', NEW.outcome,
                              'run_id', NEW.run_id));
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER fire_events AFTER INSERT OR UPDATE OF outcome ON schedule_fires
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION mcpexec_fire_events();

CREATE FUNCTION mcpexec_workflow_run_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status IS DISTINCT FROM NEW.status THEN
        PERFORM mcpexec_event(NEW.tenant, NEW.owner, 'workflow.status', NEW.id,
            json_build_object('workflow', NEW.workflow, 'status', NEW.status));
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER workflow_run_events AFTER UPDATE OF status ON workflow_runs
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION mcpexec_workflow_run_events();

CREATE FUNCTION mcpexec_workflow_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
BEGIN
    SELECT tenant, owner, workflow, status INTO r FROM workflow_runs WHERE id = NEW.run_id;
    IF FOUND THEN
        PERFORM mcpexec_event(r.tenant, r.owner, 'workflow.' || NEW.kind, NEW.run_id,
            json_build_object('workflow', r.workflow, 'status', r.status, 'step', NEW.step));
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER workflow_events_log AFTER INSERT ON workflow_events
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION mcpexec_workflow_events();
