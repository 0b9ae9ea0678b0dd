-- Run counts by tenant and status, kept by triggers in the transaction of every change
-- (issue 17, "history at scale"): Store.stats, the dashboard's overview and /metrics read a
-- few rows instead of counting a million (GROUP BY over runs took 700 ms at 1M runs).
-- Triggers, not code in each store method: every path that inserts, changes the status of,
-- or purges a run is counted, including the ones added later.

CREATE TABLE run_counts (
    tenant TEXT    NOT NULL,
    status TEXT    NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (tenant, status)
) WITHOUT ROWID;

INSERT INTO run_counts (tenant, status, n)
SELECT tenant, status, COUNT(*) FROM runs GROUP BY tenant, status;

CREATE TRIGGER run_counts_insert AFTER INSERT ON runs
BEGIN
    INSERT INTO run_counts (tenant, status, n) VALUES (NEW.tenant, NEW.status, 1)
    ON CONFLICT (tenant, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER run_counts_update AFTER UPDATE OF tenant, status ON runs
WHEN OLD.tenant IS NOT NEW.tenant OR OLD.status IS NOT NEW.status
BEGIN
    UPDATE run_counts SET n = n - 1 WHERE tenant = OLD.tenant AND status = OLD.status;
    INSERT INTO run_counts (tenant, status, n) VALUES (NEW.tenant, NEW.status, 1)
    ON CONFLICT (tenant, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER run_counts_delete AFTER DELETE ON runs
BEGIN
    UPDATE run_counts SET n = n - 1 WHERE tenant = OLD.tenant AND status = OLD.status;
END;
