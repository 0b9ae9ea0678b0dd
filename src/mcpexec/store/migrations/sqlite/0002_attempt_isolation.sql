-- Every attempt records the isolation actually applied (e.g. "bwrap ... memory=cgroup-v1") and
-- the limits in force (JSON object). NULL for attempts recorded before this migration.
ALTER TABLE attempts ADD COLUMN isolation TEXT;
ALTER TABLE attempts ADD COLUMN limits TEXT;
