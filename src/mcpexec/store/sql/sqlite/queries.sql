-- Named queries of the SQLite store. Each section starts with "-- name: <name>" and holds one
-- statement with :named parameters. Times are integer microseconds since the epoch.
-- "Fenced" means: only while the worker holds the attempt (running, same attempt, same worker).

-- name: run_by_id
SELECT * FROM runs WHERE id = :run_id AND (:tenant IS NULL OR tenant = :tenant);

-- name: run_by_key
SELECT * FROM runs WHERE tenant = :tenant AND idempotency_key = :idempotency_key;

-- name: insert_run
INSERT INTO runs (id, tenant, status, priority, spec, retry, labels, idempotency_key, rerun_of,
                  created_at, run_at, available_at)
VALUES (:id, :tenant, 'pending', :priority, :spec, :retry, :labels, :idempotency_key, :rerun_of,
        :created_at, :run_at, :available_at)
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
  AND NOT EXISTS (
      SELECT 1 FROM json_each(:labels) AS want
      WHERE NOT EXISTS (
          SELECT 1 FROM json_each(runs.labels) AS have
          WHERE have.key = want.key AND have.value = want.value))
ORDER BY seq DESC
LIMIT :limit;

-- name: claim
-- Runs inside BEGIN IMMEDIATE: the write lock is held from the SELECT on, so two processes
-- can never pick the same rows.
UPDATE runs
SET status = 'running',
    attempts = attempts + 1,
    worker_id = :worker_id,
    lease_expires_at = :lease_expires_at,
    next_attempt_at = NULL,
    started_at = COALESCE(started_at, :now)
WHERE seq IN (
    SELECT seq FROM runs
    WHERE status = 'pending' AND available_at <= :now AND cancel_requested = 0
    ORDER BY priority DESC, seq
    LIMIT :limit)
RETURNING *;

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
SELECT * FROM runs
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
INSERT OR REPLACE INTO workers (id, hostname, pid, concurrency, started_at, heartbeat_at, running)
VALUES (:id, :hostname, :pid, :concurrency, :started_at, :heartbeat_at, :running);

-- name: delete_worker
DELETE FROM workers WHERE id = :worker_id;

-- name: list_workers
SELECT * FROM workers ORDER BY id;

-- name: purge_finished
-- Attempts, logs and artifact rows go with their run (ON DELETE CASCADE).
DELETE FROM runs
WHERE seq IN (
    SELECT seq FROM runs
    WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at < :before
    ORDER BY finished_at, seq
    LIMIT :limit)
RETURNING id;

-- name: stats
SELECT status, COUNT(*) AS n FROM runs
WHERE :tenant IS NULL OR tenant = :tenant
GROUP BY status;

-- name: insert_token
INSERT INTO tokens (id, name, token_hash, role, tenant, created_at, revoked)
VALUES (:id, :name, :token_hash, :role, :tenant, :created_at, :revoked);

-- name: token_by_hash
SELECT * FROM tokens WHERE token_hash = :token_hash;

-- name: list_tokens
SELECT * FROM tokens ORDER BY created_at, id;
