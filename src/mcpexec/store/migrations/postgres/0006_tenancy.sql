-- Tenants, principals, quotas and the audit log (issue 10). 0003 stays an empty step.

CREATE TABLE tenants (
    id             TEXT    PRIMARY KEY,
    created_at     BIGINT  NOT NULL,
    max_concurrent INTEGER,
    max_queued     INTEGER
);

INSERT INTO tenants (id, created_at)
SELECT tenant, MIN(created_at) FROM (
    SELECT tenant, created_at FROM tokens
    UNION ALL SELECT tenant, created_at FROM runs
    UNION ALL SELECT 'default', (EXTRACT(EPOCH FROM now())::bigint) * 1000000) AS known
GROUP BY tenant;

CREATE TABLE principals (
    id         TEXT    PRIMARY KEY,
    tenant     TEXT    NOT NULL REFERENCES tenants (id),
    name       TEXT    NOT NULL,
    role       TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'submitter', 'viewer')),
    kind       TEXT    NOT NULL DEFAULT 'service' CHECK (kind IN ('user', 'service')),
    created_at BIGINT  NOT NULL
);

INSERT INTO principals (id, tenant, name, role, created_at)
SELECT id, tenant, name, role, created_at FROM tokens;

ALTER TABLE tokens ADD COLUMN principal_id TEXT REFERENCES principals (id);
UPDATE tokens SET principal_id = id;
ALTER TABLE tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE tokens ADD COLUMN last_used_at BIGINT;

ALTER TABLE runs ADD COLUMN owner TEXT;
CREATE INDEX runs_tenant_ready ON runs (tenant, priority DESC, seq) WHERE status = 'pending';
CREATE INDEX runs_tenant_running ON runs (tenant) WHERE status = 'running';
CREATE INDEX runs_owner ON runs (owner, seq) WHERE owner IS NOT NULL;

CREATE TABLE audit (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       BIGINT NOT NULL,
    tenant   TEXT   NOT NULL,
    actor    TEXT   NOT NULL,
    token_id TEXT,
    action   TEXT   NOT NULL,
    target   TEXT   NOT NULL,
    detail   TEXT   NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_tenant ON audit (tenant, seq);
