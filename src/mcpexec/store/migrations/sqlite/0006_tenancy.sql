-- Tenants, principals, quotas and the audit log (issue 10). 0003 was reserved for this work
-- before it was scheduled; it stays an empty step so that stored databases keep their history.

CREATE TABLE tenants (
    id             TEXT    PRIMARY KEY,
    created_at     INTEGER NOT NULL,
    max_concurrent INTEGER,  -- running attempts; NULL: the server's default
    max_queued     INTEGER   -- pending runs; NULL: the server's default
) WITHOUT ROWID;

-- Every tenant a token or a run already names, and the default one.
INSERT INTO tenants (id, created_at)
SELECT tenant, MIN(created_at) FROM (
    SELECT tenant, created_at FROM tokens
    UNION ALL SELECT tenant, created_at FROM runs
    UNION ALL SELECT 'default', CAST(strftime('%s', 'now') AS INTEGER) * 1000000)
GROUP BY tenant;

CREATE TABLE principals (
    id         TEXT    PRIMARY KEY,
    tenant     TEXT    NOT NULL REFERENCES tenants (id),
    name       TEXT    NOT NULL,
    role       TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'submitter', 'viewer')),
    kind       TEXT    NOT NULL DEFAULT 'service' CHECK (kind IN ('user', 'service')),
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- A token stored before was its own principal (the same id, name, role and tenant).
INSERT INTO principals (id, tenant, name, role, created_at)
SELECT id, tenant, name, role, created_at FROM tokens;

ALTER TABLE tokens ADD COLUMN principal_id TEXT REFERENCES principals (id);
UPDATE tokens SET principal_id = id;
ALTER TABLE tokens ADD COLUMN expires_at INTEGER;
ALTER TABLE tokens ADD COLUMN last_used_at INTEGER;

-- Who submitted each run (NULL for runs stored before).
ALTER TABLE runs ADD COLUMN owner TEXT;
-- A claim's per-tenant heads and the enqueue's pending count (the quota check).
CREATE INDEX runs_tenant_ready ON runs (tenant, priority DESC, seq) WHERE status = 'pending';
CREATE INDEX runs_tenant_running ON runs (tenant) WHERE status = 'running';
CREATE INDEX runs_owner ON runs (owner, seq) WHERE owner IS NOT NULL;

-- Append-only: nothing updates or deletes these rows.
CREATE TABLE audit (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    tenant   TEXT    NOT NULL,
    actor    TEXT    NOT NULL,
    token_id TEXT,
    action   TEXT    NOT NULL,
    target   TEXT    NOT NULL,
    detail   TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_tenant ON audit (tenant, seq);
