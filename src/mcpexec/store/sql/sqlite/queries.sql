-- Named queries of the SQLite store. Each section starts with "-- name: <name>" and holds one
-- statement with :named parameters. Times are integer microseconds since the epoch.
-- "Fenced" means: only while the worker holds the attempt (running, same attempt, same worker).

-- name: run_by_id
SELECT * FROM runs WHERE id = :run_id AND (:tenant IS NULL OR tenant = :tenant);

-- name: run_by_key
SELECT * FROM runs WHERE tenant = :tenant AND idempotency_key = :idempotency_key;

-- name: insert_run
INSERT INTO runs (id, tenant, status, priority, spec, retry, labels, idempotency_key, rerun_of,
                  created_at, run_at, available_at, task, task_version, params,
                  estimated_duration_ms, owner, tool, notify,
                  worker_labels)
VALUES (:id, :tenant, 'pending', :priority, :spec, :retry, :labels, :idempotency_key, :rerun_of,
        :created_at, :run_at, :available_at, :task, :task_version, :params,
        :estimated_duration_ms, :owner, :tool, :notify, :worker_labels)
RETURNING *;

-- name: list_runs
-- Static filters (NULL means "any") so that the statement never changes; the scan walks seq
-- (the rowid) downwards from the cursor and stops after :limit matches.
SELECT * FROM runs
WHERE seq < :cursor
  AND (:tenant IS NULL OR tenant = :tenant)
  AND (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:created_after IS NULL OR created_at >= :created_after)
  AND (:created_before IS NULL OR created_at < :created_before)
  AND (:task IS NULL OR task = :task)
  AND (:owner IS NULL OR owner = :owner)
  AND (:tool IS NULL OR json_extract(spec, '$.tool.server') || '.'
                        || json_extract(spec, '$.tool.name') = :tool)
  AND NOT EXISTS (
      SELECT 1 FROM json_each(:labels) AS want
      WHERE NOT EXISTS (
          SELECT 1 FROM json_each(runs.labels) AS have
          WHERE have.key = want.key AND have.value = want.value))
ORDER BY seq DESC
LIMIT :limit;

-- The claim runs inside BEGIN IMMEDIATE: the write lock is held from the first SELECT on, so
-- two processes can never pick the same rows nor both count a tenant's free slot.

-- name: claim_ready_tenants
-- Tenants with pending runs: a loose index scan of runs_tenant_ready (one probe per tenant,
-- however long a tenant's backlog), with the running count and quota of each. INDEXED BY:
-- without statistics (mcpexec runs no ANALYZE) SQLite took runs_status for the MIN and walked
-- every pending run, 0.4 ms per claim at a backlog of 2,000 (0.01 ms with the index).
WITH RECURSIVE ready(tenant) AS (
    SELECT MIN(tenant) FROM runs INDEXED BY runs_tenant_ready WHERE status = 'pending'
    UNION ALL
    SELECT (SELECT MIN(tenant) FROM runs INDEXED BY runs_tenant_ready
            WHERE status = 'pending' AND tenant > ready.tenant)
    FROM ready WHERE ready.tenant IS NOT NULL)
SELECT ready.tenant AS tenant,
       (SELECT COUNT(*) FROM runs INDEXED BY runs_tenant_running
        WHERE status = 'running' AND runs.tenant = ready.tenant) AS running,
       COALESCE(tenants.max_concurrent, :default_max_concurrent) AS max_concurrent
FROM ready LEFT JOIN tenants ON tenants.id = ready.tenant
WHERE ready.tenant IS NOT NULL;

-- name: claim_heads
-- The first :limit claimable runs of one tenant, in the tenant's claim order, for a worker
-- without labels: only runs asking for none (the partial index runs_tenant_ready_any).
SELECT seq, tenant, priority FROM runs
WHERE status = 'pending' AND tenant = :tenant AND available_at <= :now AND cancel_requested = 0
  AND worker_labels = '[]'
ORDER BY priority DESC, seq
LIMIT :limit;

-- name: claim_heads_labelled
-- The same for a worker with labels (:have, a JSON array): runs asking for none, or for labels
-- all among :have.
SELECT seq, tenant, priority FROM runs
WHERE status = 'pending' AND tenant = :tenant AND available_at <= :now AND cancel_requested = 0
  AND (worker_labels = '[]'
       OR NOT EXISTS (SELECT 1 FROM json_each(runs.worker_labels) AS want
                      WHERE want.value NOT IN (SELECT value FROM json_each(:have))))
ORDER BY priority DESC, seq
LIMIT :limit;

-- name: claim
UPDATE runs
SET status = 'running',
    attempts = attempts + 1,
    worker_id = :worker_id,
    lease_expires_at = :lease_expires_at,
    next_attempt_at = NULL,
    started_at = COALESCE(started_at, :now)
WHERE seq IN (SELECT value FROM json_each(:seqs))
RETURNING *;

-- name: next_available_at
-- The partial index runs_available (available_at WHERE status = 'pending') answers the MIN
-- (INDEXED BY: without statistics SQLite walked every pending run by runs_status).
-- Runs asking for a label outside :have (a JSON array) are not this worker's to wait for.
SELECT MIN(available_at) FROM runs INDEXED BY runs_available
WHERE status = 'pending' AND cancel_requested = 0
  AND (worker_labels = '[]'
       OR NOT EXISTS (SELECT 1 FROM json_each(runs.worker_labels) AS want
                      WHERE want.value NOT IN (SELECT value FROM json_each(:have))));

-- name: insert_attempt
INSERT INTO attempts (run_id, number, worker_id, status, started_at)
VALUES (:run_id, :number, :worker_id, 'running', :now);

-- name: holds
SELECT 1 FROM runs
WHERE id = :run_id AND status = 'running' AND attempts = :attempt AND worker_id = :worker_id;

-- name: renew_lease
UPDATE runs SET lease_expires_at = :lease_expires_at
WHERE id = :run_id AND status = 'running' AND attempts = :attempt AND worker_id = :worker_id
RETURNING cancel_requested;

-- name: worker_heartbeat
UPDATE workers SET heartbeat_at = :now, running = :running WHERE id = :worker_id;

-- name: record_progress
UPDATE runs SET progress = :progress
WHERE id = :run_id AND status = 'running' AND attempts = :attempt AND worker_id = :worker_id;

-- name: held_run
SELECT runs.*, EXISTS (SELECT 1 FROM artifacts WHERE artifacts.run_id = runs.id) AS has_artifacts
FROM runs
WHERE id = :run_id AND status = 'running' AND attempts = :attempt AND worker_id = :worker_id
  AND (:lease_expired_before IS NULL OR lease_expires_at <= :lease_expired_before);

-- name: finish_attempt
UPDATE attempts
SET status = :status, finished_at = :now, exit_code = :exit_code, signal = :signal,
    failure_kind = :failure_kind, failure_message = :failure_message,
    output_truncated = :output_truncated, isolation = :isolation, limits = :limits
WHERE run_id = :run_id AND number = :attempt;

-- name: finish_run
UPDATE runs
SET status = :status,
    failure_kind = :failure_kind,
    failure_message = :failure_message,
    partial = :partial,
    exit_code = :exit_code,
    result = :result,
    output_truncated = output_truncated OR :output_truncated,
    lease_expires_at = NULL,
    finished_at = :finished_at,
    next_attempt_at = :retry_at,
    available_at = COALESCE(:retry_at, available_at)
WHERE id = :run_id
RETURNING *;

-- name: expired_leases
SELECT * FROM runs INDEXED BY runs_leases
WHERE status = 'running' AND lease_expires_at <= :now
ORDER BY lease_expires_at, seq
LIMIT :limit;

-- name: expire_worker_leases
-- MIN: a lease that already ended earlier keeps its earlier end.
UPDATE runs SET lease_expires_at = MIN(lease_expires_at, :now)
WHERE status = 'running' AND worker_id = :worker_id;

-- name: cancel_pending
UPDATE runs
SET status = 'cancelled',
    cancel_requested = 1,
    failure_kind = 'cancelled',
    failure_message = :message,
    finished_at = :now,
    next_attempt_at = NULL,
    partial = EXISTS (SELECT 1 FROM artifacts WHERE artifacts.run_id = runs.id)
WHERE id = :run_id AND status = 'pending'
RETURNING *;

-- name: cancel_running
UPDATE runs SET cancel_requested = 1 WHERE id = :run_id AND status = 'running'
RETURNING *;

-- name: attempts_of_run
SELECT * FROM attempts WHERE run_id = :run_id ORDER BY number;

-- name: log_end
SELECT byte_offset + length(data) FROM logs
WHERE run_id = :run_id AND stream = :stream
ORDER BY byte_offset DESC
LIMIT 1;

-- name: insert_log
INSERT INTO logs (run_id, stream, byte_offset, attempt, data)
VALUES (:run_id, :stream, :byte_offset, :attempt, :data);

-- name: add_usage
-- Counted bytes of the run's tenant (logs + artifacts): in the transaction of the write.
INSERT INTO storage_usage (tenant, bytes)
SELECT tenant, :bytes FROM runs WHERE id = :run_id
ON CONFLICT (tenant) DO UPDATE SET bytes = bytes + excluded.bytes;

-- name: artifact_size
SELECT size FROM artifacts WHERE run_id = :run_id AND name = :name;

-- name: storage_used
SELECT COALESCE(SUM(bytes), 0) FROM storage_usage WHERE :tenant IS NULL OR tenant = :tenant;

-- name: purgeable
SELECT seq, id, tenant FROM runs
WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at < :before
ORDER BY finished_at, seq
LIMIT :limit;

-- name: run_bytes
SELECT (SELECT COALESCE(SUM(length(data)), 0) FROM logs WHERE run_id = :run_id)
     + (SELECT COALESCE(SUM(size), 0) FROM artifacts WHERE run_id = :run_id);

-- name: subtract_usage
UPDATE storage_usage SET bytes = MAX(bytes - :bytes, 0) WHERE tenant = :tenant;

-- name: delete_run
-- Attempts, logs and artifact rows go with their run (ON DELETE CASCADE).
DELETE FROM runs WHERE id = :run_id;

-- name: read_log
-- From the chunk that contains :start (an index seek) up to the chunk that contains :end - 1:
-- only the chunks of the window are read, however long the log is.
SELECT byte_offset, data FROM logs
WHERE run_id = :run_id AND stream = :stream
  AND byte_offset >= (
      SELECT COALESCE(MAX(byte_offset), 0) FROM logs
      WHERE run_id = :run_id AND stream = :stream AND byte_offset <= :start)
  AND byte_offset < :end
ORDER BY byte_offset;

-- name: upsert_artifact
INSERT INTO artifacts (run_id, name, attempt, size, sha256, created_at)
VALUES (:run_id, :name, :attempt, :size, :sha256, :created_at)
ON CONFLICT (run_id, name) DO UPDATE
SET attempt = excluded.attempt, size = excluded.size, sha256 = excluded.sha256,
    created_at = excluded.created_at;

-- name: list_artifacts
SELECT * FROM artifacts WHERE run_id = :run_id ORDER BY name;

-- name: upsert_worker
INSERT OR REPLACE INTO workers (id, hostname, pid, concurrency, started_at, heartbeat_at, running,
                                labels)
VALUES (:id, :hostname, :pid, :concurrency, :started_at, :heartbeat_at, :running, :labels);

-- name: delete_worker
DELETE FROM workers WHERE id = :worker_id;

-- name: list_workers
SELECT * FROM workers ORDER BY id;

-- name: stats
-- From the counters the triggers of migration 0009 keep, not a count over runs.
SELECT status, SUM(n) AS n FROM run_counts
WHERE :tenant IS NULL OR tenant = :tenant
GROUP BY status;

-- name: insert_token
INSERT INTO tokens (id, name, token_hash, role, tenant, created_at, revoked, principal_id,
                    expires_at)
VALUES (:id, :name, :token_hash, :role, :tenant, :created_at, :revoked, :principal_id,
        :expires_at);

-- == tenancy (issue 10) ========================================================================

-- name: ensure_tenant
INSERT OR IGNORE INTO tenants (id, created_at) VALUES (:tenant, :created_at);

-- name: ensure_principal
INSERT OR IGNORE INTO principals (id, tenant, name, role, kind, created_at)
VALUES (:principal_id, :tenant, :name, :role, :kind, :created_at);

-- name: token_by_hash
-- The principal's role and tenant govern (a token of a principal stored before is its own).
SELECT tokens.id, tokens.name, tokens.token_hash, tokens.created_at, tokens.revoked,
       tokens.expires_at, tokens.last_used_at, tokens.principal_id,
       COALESCE(principals.role, tokens.role) AS role,
       COALESCE(principals.tenant, tokens.tenant) AS tenant,
       COALESCE(principals.kind, 'service') AS kind
FROM tokens LEFT JOIN principals ON principals.id = tokens.principal_id
WHERE tokens.token_hash = :token_hash;

-- name: list_tokens
SELECT tokens.id, tokens.name, tokens.token_hash, tokens.created_at, tokens.revoked,
       tokens.expires_at, tokens.last_used_at, tokens.principal_id,
       COALESCE(principals.role, tokens.role) AS role,
       COALESCE(principals.tenant, tokens.tenant) AS tenant,
       COALESCE(principals.kind, 'service') AS kind
FROM tokens LEFT JOIN principals ON principals.id = tokens.principal_id
WHERE :tenant IS NULL OR COALESCE(principals.tenant, tokens.tenant) = :tenant
ORDER BY tokens.created_at, tokens.id;

-- name: revoke_token
UPDATE tokens SET revoked = 1
WHERE id = :token_id AND (:tenant IS NULL OR tenant = :tenant)
RETURNING id;

-- name: touch_token
UPDATE tokens SET last_used_at = :now WHERE id = :token_id;

-- name: insert_tenant
INSERT INTO tenants
    (id, created_at, max_concurrent, max_queued, max_runtime_s, max_limits, default_limits)
VALUES (:id, :created_at, :max_concurrent, :max_queued, :max_runtime_s, :max_limits,
        :default_limits);

-- name: get_tenant
SELECT * FROM tenants WHERE id = :id;

-- name: list_tenants
SELECT * FROM tenants ORDER BY id;

-- name: update_tenant
UPDATE tenants SET max_concurrent = :max_concurrent, max_queued = :max_queued,
    max_runtime_s = :max_runtime_s, max_limits = :max_limits, default_limits = :default_limits
WHERE id = :id RETURNING *;

-- name: tenant_queue
-- The enqueue's quota check: the tenant's limit and how many of its runs are pending, from
-- run_counts (kept by triggers in this very transaction, 0009): one row, not a count of the
-- queue, which made every submit O(pending).
SELECT (SELECT max_queued FROM tenants WHERE id = :tenant) AS max_queued,
       COALESCE((SELECT n FROM run_counts WHERE tenant = :tenant AND status = 'pending'), 0)
           AS pending;

-- name: all_pending
SELECT COALESCE(SUM(n), 0) AS pending FROM run_counts WHERE status = 'pending';

-- name: tenant_load
-- By the tenant's partial indexes (without statistics SQLite took runs_status and walked every
-- tenant's pending runs for each tenant, on every /metrics scrape).
SELECT (SELECT COUNT(*) FROM runs INDEXED BY runs_tenant_running
        WHERE status = 'running' AND tenant = :tenant) AS running,
       (SELECT COUNT(*) FROM runs INDEXED BY runs_tenant_ready
        WHERE status = 'pending' AND tenant = :tenant) AS pending;

-- name: insert_audit
INSERT INTO audit (at, tenant, actor, token_id, action, target, detail)
VALUES (:at, :tenant, :actor, :token_id, :action, :target, :detail);

-- name: list_audit
SELECT * FROM audit
WHERE (:tenant IS NULL OR tenant = :tenant) AND seq < :before
ORDER BY seq DESC
LIMIT :limit;

-- == tasks and schedules (issue 11) ============================================================

-- name: latest_task
SELECT * FROM tasks WHERE tenant = :tenant AND name = :name ORDER BY version DESC LIMIT 1;

-- name: task_version
SELECT * FROM tasks WHERE tenant = :tenant AND name = :name AND version = :version;

-- name: insert_task
INSERT INTO tasks (tenant, name, version, owner, content_hash, definition, created_at, archived)
VALUES (:tenant, :name, :version, :owner, :content_hash, :definition, :created_at, 0)
RETURNING *;

-- name: unarchive_task
UPDATE tasks SET archived = 0 WHERE tenant = :tenant AND name = :name;

-- name: list_tasks
SELECT * FROM tasks AS t
WHERE (:tenant IS NULL OR t.tenant = :tenant)
  AND (:archived OR t.archived = 0)
  AND t.version = (SELECT MAX(version) FROM tasks AS v WHERE v.tenant = t.tenant AND v.name = t.name)
ORDER BY t.tenant, t.name;

-- name: task_versions
SELECT * FROM tasks WHERE tenant = :tenant AND name = :name ORDER BY version;

-- name: archive_task
UPDATE tasks SET archived = 1 WHERE tenant = :tenant AND name = :name;

-- name: insert_schedule
INSERT INTO schedules (id, tenant, owner, task, task_version, params, spec, created_at, updated_at,
                       handled_until, next_fire_at)
VALUES (:id, :tenant, :owner, :task, :task_version, :params, :spec, :created_at, :created_at,
        :handled_until, :next_fire_at)
RETURNING *;

-- name: schedule_by_id
SELECT * FROM schedules WHERE id = :id AND (:tenant IS NULL OR tenant = :tenant);

-- name: list_schedules
SELECT * FROM schedules WHERE :tenant IS NULL OR tenant = :tenant ORDER BY created_at, id;

-- name: update_schedule
UPDATE schedules
SET spec = :spec, task_version = :task_version, params = :params, next_fire_at = :next_fire_at,
    handled_until = :handled_until, updated_at = :updated_at
WHERE id = :id
RETURNING *;

-- name: delete_schedule
DELETE FROM schedules WHERE id = :id;

-- name: due_schedules
SELECT * FROM schedules
WHERE next_fire_at IS NOT NULL AND next_fire_at <= :now
ORDER BY next_fire_at
LIMIT :limit;

-- name: buffered_schedules
SELECT * FROM schedules WHERE buffered_fire IS NOT NULL ORDER BY id LIMIT :limit;

-- name: min_next_fire
SELECT MIN(next_fire_at) FROM schedules WHERE next_fire_at IS NOT NULL;

-- name: advance_schedule
-- The cursor moves only from the value this step read: a slower process changes nothing.
UPDATE schedules
SET handled_until = :handled_until, next_fire_at = :next_fire_at,
    missed_count = missed_count + :missed
WHERE id = :id AND handled_until = :expected;

-- name: schedule_exists
SELECT 1 FROM schedules WHERE id = :id;

-- name: insert_fire
INSERT INTO schedule_fires (schedule_id, fire_key, fire_at, outcome, run_id, message, created_at)
VALUES (:schedule_id, :fire_key, :fire_at, :outcome, :run_id, :message, :created_at)
ON CONFLICT (schedule_id, fire_key) DO NOTHING;

-- name: note_fire
UPDATE schedules
SET last_fire_at = :fire_at,
    last_outcome = :outcome,
    last_run_id = COALESCE(:run_id, last_run_id),
    skipped_count = skipped_count + :skipped,
    buffered_fire = CASE WHEN :buffer THEN :fire_key ELSE buffered_fire END
WHERE id = :schedule_id;

-- name: take_buffered
UPDATE schedules SET buffered_fire = NULL, last_run_id = :run_id, last_outcome = 'started'
WHERE id = :schedule_id AND buffered_fire = :fire_key;

-- name: start_buffered_fire
UPDATE schedule_fires SET outcome = 'started', run_id = :run_id
WHERE schedule_id = :schedule_id AND fire_key = :fire_key;

-- name: schedule_fires
SELECT * FROM schedule_fires WHERE schedule_id = :schedule_id
ORDER BY fire_at DESC, created_at DESC
LIMIT :limit;

-- name: run_history
-- The hourly rollup (migration 0012) from :since's hour on; the key leads with the hour.
SELECT hour, series, bucket, SUM(n) AS n FROM run_rollup
WHERE hour >= :since - :since % 3600000000 AND (:tenant IS NULL OR tenant = :tenant)
GROUP BY hour, series, bucket
ORDER BY hour;

-- name: prune_history
-- The rollup of the hours before :before's, oldest first, :limit rows at a time (the key leads
-- with the hour: a range of the primary key).
DELETE FROM run_rollup WHERE (hour, tenant, series, bucket) IN (
    SELECT hour, tenant, series, bucket FROM run_rollup
    WHERE hour < :before - :before % 3600000000
    ORDER BY hour LIMIT :limit
);
