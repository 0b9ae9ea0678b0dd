-- A tenant's cap on a run's timeout and its default and maximum resource limits (issue 10).
-- The limits are JSON objects of models.Limits fields (memory_mb, cpu_s, pids, disk_mb) to
-- integers; an absent key: no tenant default / no tenant maximum.
ALTER TABLE tenants ADD COLUMN max_runtime_s INTEGER;  -- NULL: no cap beyond the server's
ALTER TABLE tenants ADD COLUMN max_limits TEXT NOT NULL DEFAULT '{}';
ALTER TABLE tenants ADD COLUMN default_limits TEXT NOT NULL DEFAULT '{}';
