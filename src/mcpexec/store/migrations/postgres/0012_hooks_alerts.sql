-- Webhooks and alerts (issue 17); the same tables and columns as the SQLite dialect's 0012.
-- A run's end is queued for its webhook by a trigger in the transaction of its status change.

ALTER TABLE runs ADD COLUMN notify TEXT;

CREATE TABLE webhook_deliveries (
    id           BIGSERIAL PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    url          TEXT    NOT NULL,
    event        TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    body         TEXT,
    status       TEXT    NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    created_at   BIGINT  NOT NULL,
    next_at      BIGINT,
    delivered_at BIGINT,
    last_error   TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_subject ON webhook_deliveries (subject, id);

CREATE FUNCTION mcpexec_run_webhook() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    now_us BIGINT := (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT;
BEGIN
    IF OLD.status IS DISTINCT FROM NEW.status AND NEW.notify IS NOT NULL
       AND (NEW.notify::jsonb -> 'on') ? NEW.status THEN
        INSERT INTO webhook_deliveries (tenant, url, event, subject, created_at, next_at)
        VALUES (NEW.tenant, NEW.notify::jsonb ->> 'webhook', 'run.' || NEW.status, NEW.id,
                now_us, now_us);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER run_webhook AFTER UPDATE OF status ON runs
FOR EACH ROW EXECUTE FUNCTION mcpexec_run_webhook();

CREATE TABLE alerts (
    rule        TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    tenant      TEXT,
    state       TEXT    NOT NULL,
    value       DOUBLE PRECISION,
    message     TEXT    NOT NULL DEFAULT '',
    fired_at    BIGINT  NOT NULL,
    resolved_at BIGINT,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (rule, subject)
);

CREATE TABLE leases (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL
);
