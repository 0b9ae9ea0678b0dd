-- Bytes of logs and artifacts per tenant, kept in the same transaction as every append,
-- artifact record and purge.
CREATE TABLE storage_usage (
    tenant TEXT   PRIMARY KEY,
    bytes  BIGINT NOT NULL DEFAULT 0
);

INSERT INTO storage_usage (tenant, bytes)
SELECT tenant, SUM(bytes) FROM (
    SELECT runs.tenant AS tenant, length(logs.data)::bigint AS bytes
    FROM logs JOIN runs ON runs.id = logs.run_id
    UNION ALL
    SELECT runs.tenant, artifacts.size
    FROM artifacts JOIN runs ON runs.id = artifacts.run_id) AS used
GROUP BY tenant;
