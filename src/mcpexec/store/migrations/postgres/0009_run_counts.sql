-- Run counts by tenant and status, kept by a trigger in the transaction of every change
-- (issue 17, "history at scale"); the same table as the SQLite dialect's 0009.
-- A status change touches its two counter rows in one order (by status name), whatever the
-- direction: a claim (pending -> running) and a requeue (running -> pending) running at once
-- would otherwise lock them in opposite orders and deadlock.

CREATE TABLE run_counts (
    tenant TEXT   NOT NULL,
    status TEXT   NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (tenant, status)
);

INSERT INTO run_counts (tenant, status, n)
SELECT tenant, status, COUNT(*) FROM runs GROUP BY tenant, status;

CREATE FUNCTION mcpexec_count_run(t TEXT, s TEXT, delta INTEGER) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO run_counts (tenant, status, n) VALUES (t, s, delta)
    ON CONFLICT (tenant, status) DO UPDATE SET n = run_counts.n + delta;
$$;

CREATE FUNCTION mcpexec_run_counts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM mcpexec_count_run(NEW.tenant, NEW.status, 1);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM mcpexec_count_run(OLD.tenant, OLD.status, -1);
    ELSIF OLD.tenant IS DISTINCT FROM NEW.tenant OR OLD.status IS DISTINCT FROM NEW.status THEN
        IF (OLD.tenant, OLD.status) < (NEW.tenant, NEW.status) THEN
            PERFORM mcpexec_count_run(OLD.tenant, OLD.status, -1);
            PERFORM mcpexec_count_run(NEW.tenant, NEW.status, 1);
        ELSE
            PERFORM mcpexec_count_run(NEW.tenant, NEW.status, 1);
            PERFORM mcpexec_count_run(OLD.tenant, OLD.status, -1);
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER run_counts AFTER INSERT OR DELETE OR UPDATE OF tenant, status ON runs
FOR EACH ROW EXECUTE FUNCTION mcpexec_run_counts();
