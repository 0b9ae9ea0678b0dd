-- Webhooks and alerts (issue 17). A run's "notify" (JSON: webhook, on); the deliveries the engine
-- POSTs with retries (a run's end is queued by a trigger in the transaction of its status
-- change, so no path that finishes a run can forget it); alert states; leases for duties one
-- process of many does at a time (the alert evaluation). Times are integer microseconds.

ALTER TABLE runs ADD COLUMN notify TEXT;

CREATE TABLE webhook_deliveries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant       TEXT    NOT NULL,
    url          TEXT    NOT NULL,
    event        TEXT    NOT NULL,   -- run.completed, run.failed, alert.firing, alert.resolved
    subject      TEXT    NOT NULL,   -- run id, or rule/subject of an alert
    body         TEXT,               -- JSON; NULL: a run's, built from the run when delivered
    status       TEXT    NOT NULL DEFAULT 'pending',  -- pending, delivered, failed
    attempts     INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    next_at      INTEGER,            -- when it is next due (a claim moves it by the lease)
    delivered_at INTEGER,
    last_error   TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_subject ON webhook_deliveries (subject, id);

CREATE TRIGGER webhook_run_finished AFTER UPDATE OF status ON runs
WHEN OLD.status IS NOT NEW.status AND NEW.notify IS NOT NULL
     AND EXISTS (SELECT 1 FROM json_each(NEW.notify, '$.on') WHERE value = NEW.status)
BEGIN
    INSERT INTO webhook_deliveries (tenant, url, event, subject, created_at, next_at) VALUES (
        NEW.tenant, json_extract(NEW.notify, '$.webhook'), 'run.' || NEW.status, NEW.id,
        CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER),
        CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER));
END;

CREATE TABLE alerts (
    rule        TEXT    NOT NULL,
    subject     TEXT    NOT NULL,   -- '' for a rule with one state, else tenant, task, run, ...
    tenant      TEXT,               -- who may see it besides an admin (NULL: admins only)
    state       TEXT    NOT NULL,   -- firing, resolved
    value       REAL,
    message     TEXT    NOT NULL DEFAULT '',
    fired_at    INTEGER NOT NULL,
    resolved_at INTEGER,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (rule, subject)
);

CREATE TABLE leases (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
