-- A tenant's cap on a run's timeout and its default and maximum resource limits (issue 10).
ALTER TABLE tenants ADD COLUMN max_runtime_s INTEGER;
ALTER TABLE tenants ADD COLUMN max_limits TEXT NOT NULL DEFAULT '{}';
ALTER TABLE tenants ADD COLUMN default_limits TEXT NOT NULL DEFAULT '{}';
