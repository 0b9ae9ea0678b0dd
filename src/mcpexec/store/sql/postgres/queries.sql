-- Named queries of the PostgreSQL store. Each section starts with "-- name: <name>" and holds one
-- statement with psycopg's named parameters. Times are BIGINT microseconds since the epoch, as
-- in the SQLite dialect. A parameter tested with IS NULL carries a cast: the server must know
-- its type. "Fenced" means: only while the worker holds the attempt.

-- name: run_by_id
SELECT * FROM runs WHERE id = %(run_id)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s);

-- name: run_by_id_for_update
SELECT * FROM runs WHERE id = %(run_id)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
FOR UPDATE;

-- name: run_by_key
SELECT * FROM runs WHERE tenant = %(tenant)s AND idempotency_key = %(idempotency_key)s;

-- name: insert_run
-- A concurrent submit with the same idempotency key waits for the first one's commit and then
-- inserts nothing (the caller reads the existing run); a duplicate id still raises.
INSERT INTO runs (id, tenant, status, priority, spec, retry, labels, idempotency_key, rerun_of,
                  created_at, run_at, available_at, task, task_version, params,
                  estimated_duration_ms, owner, tool, notify,
                  worker_labels)
VALUES (%(id)s, %(tenant)s, 'pending', %(priority)s, %(spec)s, %(retry)s, %(labels)s,
        %(idempotency_key)s, %(rerun_of)s, %(created_at)s, %(run_at)s, %(available_at)s,
        %(task)s, %(task_version)s, %(params)s, %(estimated_duration_ms)s, %(owner)s, %(tool)s,
        %(notify)s, %(worker_labels)s)
ON CONFLICT (tenant, idempotency_key) DO NOTHING
RETURNING *;

-- name: notify_work
-- Delivered at COMMIT to every listening store (LISTEN mcpexec_work); the payload names the
-- store object that wrote, so that it does not wake itself twice.
SELECT pg_notify('mcpexec_work', %(origin)s);

-- name: list_runs
-- jsonb refuses the escape of NUL (backslash-u0000) that JSON text may hold (in tool arguments,
-- label values): the documents are parsed with it replaced by the escape of U+FFFF, on both
-- sides of the label comparison, so a NUL in a stored run never breaks a listing.
SELECT * FROM runs
WHERE seq < %(cursor)s
  AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
  AND (%(statuses)s::text[] IS NULL OR status = ANY (%(statuses)s::text[]))
  AND (%(created_after)s::bigint IS NULL OR created_at >= %(created_after)s)
  AND (%(created_before)s::bigint IS NULL OR created_at < %(created_before)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
  AND (%(owner)s::text IS NULL OR owner = %(owner)s)
  AND (%(tool)s::text IS NULL
       OR (replace(spec, '\u0000', '\uffff')::jsonb #>> '{tool,server}') || '.'
          || (replace(spec, '\u0000', '\uffff')::jsonb #>> '{tool,name}') = %(tool)s)
  AND (%(labels)s::text = '{}'
       OR replace(labels, '\u0000', '\uffff')::jsonb
          @> replace(%(labels)s::text, '\u0000', '\uffff')::jsonb)
ORDER BY seq DESC
LIMIT %(limit)s;

-- name: claim_ready_tenants
-- Tenants with pending runs: a loose index scan of runs_tenant_ready (one probe per tenant,
-- however long a tenant's backlog), with each tenant's quota.
WITH RECURSIVE ready(tenant) AS (
    (SELECT tenant FROM runs WHERE status = 'pending' ORDER BY tenant LIMIT 1)
    UNION ALL
    SELECT (SELECT r.tenant FROM runs AS r
            WHERE r.status = 'pending' AND r.tenant > ready.tenant
            ORDER BY r.tenant LIMIT 1)
    FROM ready WHERE ready.tenant IS NOT NULL)
SELECT ready.tenant AS tenant,
       COALESCE(tenants.max_concurrent, %(default_max_concurrent)s::integer) AS max_concurrent,
       (SELECT COUNT(*) FROM runs WHERE status = 'running' AND runs.tenant = ready.tenant)
           AS running
FROM ready LEFT JOIN tenants ON tenants.id = ready.tenant
WHERE ready.tenant IS NOT NULL
ORDER BY ready.tenant;

-- name: lock_tenant_claims
-- Held to COMMIT: claimers of a capped tenant count and take its slots one at a time, in
-- every process on every machine. Locked in sorted order (no deadlock; were one detected, the
-- transaction would be retried whole).
SELECT pg_advisory_xact_lock(hashtextextended('mcpexec.claim:' || capped.tenant, 0))
FROM (SELECT tenant FROM unnest(%(tenants)s::text[]) AS t(tenant) ORDER BY tenant) AS capped;

-- name: running_by_tenant
-- The capped tenants' counts again, after their locks were taken: a statement's snapshot then
-- includes every claim committed by the previous holder (the first count may be stale).
SELECT tenant, COUNT(*) AS running FROM runs
WHERE status = 'running' AND tenant = ANY (%(tenants)s::text[])
GROUP BY tenant;

-- name: claim_heads
-- The first few claimable runs of each tenant in its claim order, locked; rows another claimer
-- holds are skipped, not waited for. For a worker without labels: only runs asking for none
-- (the partial index runs_tenant_ready_any, so labelled runs never lengthen the scan).
SELECT heads.seq, heads.tenant, heads.priority
FROM unnest(%(tenants)s::text[], %(wants)s::integer[]) AS w(tenant, want)
CROSS JOIN LATERAL (
    SELECT seq, tenant, priority FROM runs
    WHERE status = 'pending' AND tenant = w.tenant AND available_at <= %(now)s
      AND NOT cancel_requested AND worker_labels = '[]'
    ORDER BY priority DESC, seq
    LIMIT w.want
    FOR UPDATE SKIP LOCKED) AS heads;

-- name: claim_heads_labelled
-- The same for a worker with labels (%(have)s, a JSON array): runs asking for none, or for
-- labels all among them (jsonb array containment).
SELECT heads.seq, heads.tenant, heads.priority
FROM unnest(%(tenants)s::text[], %(wants)s::integer[]) AS w(tenant, want)
CROSS JOIN LATERAL (
    SELECT seq, tenant, priority FROM runs
    WHERE status = 'pending' AND tenant = w.tenant AND available_at <= %(now)s
      AND NOT cancel_requested
      AND (worker_labels = '[]' OR worker_labels::jsonb <@ %(have)s::jsonb)
    ORDER BY priority DESC, seq
    LIMIT w.want
    FOR UPDATE SKIP LOCKED) AS heads;

-- name: claim
WITH claimed AS (
    UPDATE runs
    SET status = 'running',
        attempts = attempts + 1,
        worker_id = %(worker_id)s,
        lease_expires_at = %(lease_expires_at)s,
        next_attempt_at = NULL,
        started_at = COALESCE(started_at, %(now)s)
    WHERE seq = ANY (%(seqs)s::bigint[])
    RETURNING *),
attempt_rows AS (
    INSERT INTO attempts (run_id, number, worker_id, status, started_at)
    SELECT id, attempts, %(worker_id)s, 'running', %(now)s FROM claimed)
SELECT * FROM claimed;

-- name: claim_one_tenant
-- The claim when one tenant without a max_concurrent has ready runs (the common case), in ONE
-- statement run in autocommit (Database.statement), committed by the server when it ends, so
-- the rows it locks (the runs, the tenant's run_counts rows) are never held across a round
-- trip to the worker. It finds the ready tenants itself (the loose scan of
-- claim_ready_tenants); its rows: ready_tenants and fast (1: this path applied; 0 while
-- tenants are ready: the caller uses the transaction of claim_heads + fair_pick + claim
-- instead), with the claimed run's columns (NULL when none was claimed). The same choice as
-- claim_heads + fair_pick + claim for a single uncapped tenant (higher priority first, then
-- FIFO). For a worker without labels (the
-- partial index runs_tenant_ready_any, as claim_heads).
WITH RECURSIVE ready(tenant) AS (
    (SELECT tenant FROM runs WHERE status = 'pending' ORDER BY tenant LIMIT 1)
    UNION ALL
    SELECT (SELECT r.tenant FROM runs AS r
            WHERE r.status = 'pending' AND r.tenant > ready.tenant
            ORDER BY r.tenant LIMIT 1)
    FROM ready WHERE ready.tenant IS NOT NULL),
ready_tenants AS (
    SELECT ready.tenant,
           COALESCE(tenants.max_concurrent, %(default_max_concurrent)s::integer) AS cap
    FROM ready LEFT JOIN tenants ON tenants.id = ready.tenant
    WHERE ready.tenant IS NOT NULL),
only_one AS (
    SELECT tenant FROM ready_tenants
    WHERE cap IS NULL AND (SELECT COUNT(*) FROM ready_tenants) = 1),
heads AS (
    SELECT seq FROM runs
    WHERE status = 'pending' AND tenant = (SELECT tenant FROM only_one)
      AND available_at <= %(now)s AND NOT cancel_requested
      AND worker_labels = '[]'
    ORDER BY priority DESC, seq
    LIMIT %(want)s
    FOR UPDATE SKIP LOCKED),
claimed AS (
    UPDATE runs
    SET status = 'running',
        attempts = attempts + 1,
        worker_id = %(worker_id)s,
        lease_expires_at = %(lease_expires_at)s,
        next_attempt_at = NULL,
        started_at = COALESCE(started_at, %(now)s)
    FROM heads WHERE runs.seq = heads.seq
    RETURNING runs.*),
attempt_rows AS (
    INSERT INTO attempts (run_id, number, worker_id, status, started_at)
    SELECT id, attempts, %(worker_id)s, 'running', %(now)s FROM claimed)
SELECT summary.ready_tenants, summary.fast, claimed.*
FROM (SELECT (SELECT COUNT(*) FROM ready_tenants) AS ready_tenants,
             (SELECT COUNT(*) FROM only_one) AS fast) AS summary
LEFT JOIN claimed ON TRUE
ORDER BY claimed.priority DESC, claimed.seq;

-- name: claim_one_tenant_labelled
-- The claim when one tenant without a max_concurrent has ready runs (the common case), in ONE
-- statement run in autocommit (Database.statement), committed by the server when it ends, so
-- the rows it locks (the runs, the tenant's run_counts rows) are never held across a round
-- trip to the worker. It finds the ready tenants itself (the loose scan of
-- claim_ready_tenants); its rows: ready_tenants and fast (1: this path applied; 0 while
-- tenants are ready: the caller uses the transaction of claim_heads + fair_pick + claim
-- instead), with the claimed run's columns (NULL when none was claimed). The same choice as
-- claim_heads + fair_pick + claim for a single uncapped tenant (higher priority first, then
-- FIFO). For a worker with labels
-- (%(have)s, a JSON array), as claim_heads_labelled.
WITH RECURSIVE ready(tenant) AS (
    (SELECT tenant FROM runs WHERE status = 'pending' ORDER BY tenant LIMIT 1)
    UNION ALL
    SELECT (SELECT r.tenant FROM runs AS r
            WHERE r.status = 'pending' AND r.tenant > ready.tenant
            ORDER BY r.tenant LIMIT 1)
    FROM ready WHERE ready.tenant IS NOT NULL),
ready_tenants AS (
    SELECT ready.tenant,
           COALESCE(tenants.max_concurrent, %(default_max_concurrent)s::integer) AS cap
    FROM ready LEFT JOIN tenants ON tenants.id = ready.tenant
    WHERE ready.tenant IS NOT NULL),
only_one AS (
    SELECT tenant FROM ready_tenants
    WHERE cap IS NULL AND (SELECT COUNT(*) FROM ready_tenants) = 1),
heads AS (
    SELECT seq FROM runs
    WHERE status = 'pending' AND tenant = (SELECT tenant FROM only_one)
      AND available_at <= %(now)s AND NOT cancel_requested
      AND (worker_labels = '[]' OR worker_labels::jsonb <@ %(have)s::jsonb)
    ORDER BY priority DESC, seq
    LIMIT %(want)s
    FOR UPDATE SKIP LOCKED),
claimed AS (
    UPDATE runs
    SET status = 'running',
        attempts = attempts + 1,
        worker_id = %(worker_id)s,
        lease_expires_at = %(lease_expires_at)s,
        next_attempt_at = NULL,
        started_at = COALESCE(started_at, %(now)s)
    FROM heads WHERE runs.seq = heads.seq
    RETURNING runs.*),
attempt_rows AS (
    INSERT INTO attempts (run_id, number, worker_id, status, started_at)
    SELECT id, attempts, %(worker_id)s, 'running', %(now)s FROM claimed)
SELECT summary.ready_tenants, summary.fast, claimed.*
FROM (SELECT (SELECT COUNT(*) FROM ready_tenants) AS ready_tenants,
             (SELECT COUNT(*) FROM only_one) AS fast) AS summary
LEFT JOIN claimed ON TRUE
ORDER BY claimed.priority DESC, claimed.seq;

-- name: next_available_at
-- Runs asking for a label outside %(have)s (a JSON array) are not this worker's to wait for.
SELECT MIN(available_at) AS at FROM runs
WHERE status = 'pending' AND NOT cancel_requested
  AND (worker_labels = '[]' OR worker_labels::jsonb <@ %(have)s::jsonb);

-- name: holds
-- Locks the run: a finish (or the reaper) waits for this write, and appends to one stream
-- take turns (the end offset read and the insert).
SELECT 1 FROM runs
WHERE id = %(run_id)s AND status = 'running' AND attempts = %(attempt)s
  AND worker_id = %(worker_id)s
FOR UPDATE;

-- name: renew_leases
-- Every held attempt in one statement; the rows returned are the ones still held.
UPDATE runs SET lease_expires_at = %(lease_expires_at)s
FROM unnest(%(run_ids)s::text[], %(attempts)s::integer[]) AS held(run_id, attempt)
WHERE runs.id = held.run_id AND runs.status = 'running' AND runs.attempts = held.attempt
  AND runs.worker_id = %(worker_id)s
RETURNING runs.id, runs.cancel_requested;

-- name: worker_heartbeat
UPDATE workers SET heartbeat_at = %(now)s, running = %(running)s WHERE id = %(worker_id)s;

-- name: record_progress
UPDATE runs SET progress = %(progress)s
WHERE id = %(run_id)s AND status = 'running' AND attempts = %(attempt)s
  AND worker_id = %(worker_id)s;

-- name: held_run
SELECT runs.*,
       EXISTS (SELECT 1 FROM artifacts WHERE artifacts.run_id = runs.id) AS has_artifacts
FROM runs
WHERE id = %(run_id)s AND status = 'running' AND attempts = %(attempt)s
  AND worker_id = %(worker_id)s
  AND (%(lease_expired_before)s::bigint IS NULL
       OR lease_expires_at <= %(lease_expired_before)s)
FOR UPDATE;

-- name: finish_attempt
UPDATE attempts
SET status = %(status)s, finished_at = %(now)s, exit_code = %(exit_code)s,
    signal = %(signal)s, failure_kind = %(failure_kind)s, failure_message = %(failure_message)s,
    output_truncated = %(output_truncated)s, isolation = %(isolation)s, limits = %(limits)s
WHERE run_id = %(run_id)s AND number = %(attempt)s;

-- name: finish_run
UPDATE runs
SET status = %(status)s,
    failure_kind = %(failure_kind)s,
    failure_message = %(failure_message)s,
    partial = %(partial)s,
    exit_code = %(exit_code)s,
    result = %(result)s,
    output_truncated = output_truncated OR %(output_truncated)s,
    lease_expires_at = NULL,
    finished_at = %(finished_at)s,
    next_attempt_at = %(retry_at)s,
    available_at = COALESCE(%(retry_at)s::bigint, available_at)
WHERE id = %(run_id)s
RETURNING *;

-- name: held_run_unlocked
-- held_run without the lock: what finish_attempt decides on, read in autocommit; the write
-- (finish) then checks that nothing it decided on changed.
SELECT runs.cancel_requested,
       EXISTS (SELECT 1 FROM artifacts WHERE artifacts.run_id = runs.id) AS has_artifacts
FROM runs
WHERE id = %(run_id)s AND status = 'running' AND attempts = %(attempt)s
  AND worker_id = %(worker_id)s
  AND (%(lease_expired_before)s::bigint IS NULL
       OR lease_expires_at <= %(lease_expired_before)s);

-- name: finish
-- finish_attempt + finish_run (+ the log tail) in ONE statement run in autocommit (Database.statement), so the
-- run's row and its tenant's run_counts rows are locked for this statement and its COMMIT only.
-- Fenced as held_run, and optimistic: only if cancel_requested and has_artifacts are still
-- what the decision was made on (a cancel in between: no row, the caller reads and decides
-- again); NULL for a run that succeeded, whose decision depends on neither (no read first).
-- A retry moves the run to pending and NOTIFYs the other stores.
WITH run AS (
    UPDATE runs
    SET status = %(status)s,
        failure_kind = %(failure_kind)s,
        failure_message = %(failure_message)s,
        partial = %(partial)s,
        exit_code = %(exit_code)s,
        result = %(result)s,
        output_truncated = output_truncated OR %(output_truncated)s,
        lease_expires_at = NULL,
        finished_at = %(finished_at)s,
        next_attempt_at = %(retry_at)s,
        available_at = COALESCE(%(retry_at)s::bigint, available_at)
    WHERE id = %(run_id)s AND status = 'running' AND attempts = %(attempt)s
      AND worker_id = %(worker_id)s
      AND (%(lease_expired_before)s::bigint IS NULL
           OR lease_expires_at <= %(lease_expired_before)s)
      AND (%(seen_cancel)s::boolean IS NULL OR cancel_requested = %(seen_cancel)s)
      AND (%(seen_artifacts)s::boolean IS NULL
           OR EXISTS (SELECT 1 FROM artifacts WHERE artifacts.run_id = runs.id)
              = %(seen_artifacts)s)
    RETURNING *),
attempt AS (
    UPDATE attempts
    SET status = %(a_status)s, finished_at = %(a_now)s, exit_code = %(a_exit_code)s,
        signal = %(a_signal)s, failure_kind = %(a_failure_kind)s,
        failure_message = %(a_failure_message)s, output_truncated = %(a_output_truncated)s,
        isolation = %(a_isolation)s, limits = %(a_limits)s
    WHERE run_id = %(run_id)s AND number = %(attempt)s AND EXISTS (SELECT 1 FROM run)),
tail AS (  -- AttemptOutcome.log_tail: at most one chunk per stream, at the stream's end
    INSERT INTO logs (run_id, stream, byte_offset, attempt, data)
    SELECT %(run_id)s, t.stream,
           COALESCE((SELECT l.byte_offset + length(l.data) FROM logs AS l
                     WHERE l.run_id = %(run_id)s AND l.stream = t.stream
                     ORDER BY l.byte_offset DESC LIMIT 1), 0),
           %(attempt)s, t.data
    FROM unnest(%(tail_streams)s::text[], %(tail_data)s::bytea[]) AS t(stream, data)
    WHERE EXISTS (SELECT 1 FROM run) AND length(t.data) > 0
    RETURNING length(data) AS n),
usage AS (
    INSERT INTO storage_usage (tenant, bytes)
    SELECT run.tenant, SUM(tail.n) FROM run CROSS JOIN tail GROUP BY run.tenant
    ON CONFLICT (tenant) DO UPDATE SET bytes = storage_usage.bytes + excluded.bytes)
SELECT run.*,
       CASE WHEN run.status = 'pending' THEN pg_notify('mcpexec_work', %(origin)s)::text END
           AS notified
FROM run;

-- name: expired_leases
SELECT * FROM runs
WHERE status = 'running' AND lease_expires_at <= %(now)s
ORDER BY lease_expires_at, seq
LIMIT %(limit)s;

-- name: expire_worker_leases
UPDATE runs SET lease_expires_at = LEAST(lease_expires_at, %(now)s)
WHERE status = 'running' AND worker_id = %(worker_id)s;

-- name: cancel_pending
UPDATE runs
SET status = 'cancelled',
    cancel_requested = TRUE,
    failure_kind = 'cancelled',
    failure_message = %(message)s,
    finished_at = %(now)s,
    next_attempt_at = NULL,
    partial = EXISTS (SELECT 1 FROM artifacts WHERE artifacts.run_id = runs.id)
WHERE id = %(run_id)s AND status = 'pending'
RETURNING *;

-- name: cancel_running
UPDATE runs SET cancel_requested = TRUE WHERE id = %(run_id)s AND status = 'running'
RETURNING *;

-- name: attempt_finished_at
-- When an attempt was finished: a finish retried after a lost connection tells its own
-- (finished at its ``now``) from the reaper's or another's.
SELECT finished_at FROM attempts WHERE run_id = %(run_id)s AND number = %(attempt)s;

-- name: attempts_of_run
SELECT * FROM attempts WHERE run_id = %(run_id)s ORDER BY number;

-- name: log_end
SELECT byte_offset + length(data) AS end_offset FROM logs
WHERE run_id = %(run_id)s AND stream = %(stream)s
ORDER BY byte_offset DESC
LIMIT 1;

-- name: insert_log
INSERT INTO logs (run_id, stream, byte_offset, attempt, data)
VALUES (%(run_id)s, %(stream)s, %(byte_offset)s, %(attempt)s, %(data)s);

-- name: add_usage
INSERT INTO storage_usage (tenant, bytes)
SELECT tenant, %(bytes)s FROM runs WHERE id = %(run_id)s
ON CONFLICT (tenant) DO UPDATE SET bytes = storage_usage.bytes + excluded.bytes;

-- name: artifact_size
SELECT size FROM artifacts WHERE run_id = %(run_id)s AND name = %(name)s;

-- name: storage_used
SELECT COALESCE(SUM(bytes), 0)::bigint AS used FROM storage_usage
WHERE %(tenant)s::text IS NULL OR tenant = %(tenant)s;

-- name: purgeable
-- Locked and skipped when another purger holds them: two processes never purge one run twice.
SELECT seq, id, tenant FROM runs
WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at < %(before)s
ORDER BY finished_at, seq
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: purged_bytes
-- Bytes of logs and artifacts of the runs about to be purged, per tenant.
SELECT runs.tenant AS tenant, COALESCE(SUM(used.bytes), 0)::bigint AS bytes
FROM runs JOIN (
    SELECT run_id, length(data)::bigint AS bytes FROM logs WHERE run_id = ANY (%(run_ids)s::text[])
    UNION ALL
    SELECT run_id, size FROM artifacts WHERE run_id = ANY (%(run_ids)s::text[])) AS used
  ON used.run_id = runs.id
GROUP BY runs.tenant;

-- name: subtract_usage
UPDATE storage_usage SET bytes = GREATEST(bytes - %(bytes)s, 0) WHERE tenant = %(tenant)s;

-- name: delete_runs
-- Attempts, logs and artifact rows go with their run (ON DELETE CASCADE).
DELETE FROM runs WHERE id = ANY (%(run_ids)s::text[]);

-- name: read_log
SELECT byte_offset, data FROM logs
WHERE run_id = %(run_id)s AND stream = %(stream)s
  AND byte_offset >= (
      SELECT COALESCE(MAX(byte_offset), 0) FROM logs
      WHERE run_id = %(run_id)s AND stream = %(stream)s AND byte_offset <= %(start)s)
  AND byte_offset < %(end)s
ORDER BY byte_offset;

-- name: upsert_artifact
INSERT INTO artifacts (run_id, name, attempt, size, sha256, created_at)
VALUES (%(run_id)s, %(name)s, %(attempt)s, %(size)s, %(sha256)s, %(created_at)s)
ON CONFLICT (run_id, name) DO UPDATE
SET attempt = excluded.attempt, size = excluded.size, sha256 = excluded.sha256,
    created_at = excluded.created_at;

-- name: list_artifacts
SELECT * FROM artifacts WHERE run_id = %(run_id)s ORDER BY name;

-- name: upsert_worker
INSERT INTO workers (id, hostname, pid, concurrency, started_at, heartbeat_at, running, labels)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(concurrency)s, %(started_at)s, %(heartbeat_at)s,
        %(running)s, %(labels)s)
ON CONFLICT (id) DO UPDATE
SET hostname = excluded.hostname, pid = excluded.pid, concurrency = excluded.concurrency,
    started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
    labels = excluded.labels,
    running = excluded.running;

-- name: delete_worker
DELETE FROM workers WHERE id = %(worker_id)s;

-- name: list_workers
SELECT * FROM workers ORDER BY id;

-- name: stats
-- From the counters the trigger of migration 0009 keeps, not a count over runs.
SELECT status, SUM(n)::bigint AS n FROM run_counts
WHERE %(tenant)s::text IS NULL OR tenant = %(tenant)s
GROUP BY status;

-- == tenancy (issue 10) ========================================================================

-- name: insert_token
INSERT INTO tokens (id, name, token_hash, role, tenant, created_at, revoked, principal_id,
                    expires_at)
VALUES (%(id)s, %(name)s, %(token_hash)s, %(role)s, %(tenant)s, %(created_at)s, %(revoked)s,
        %(principal_id)s, %(expires_at)s);

-- name: ensure_tenant
INSERT INTO tenants (id, created_at) VALUES (%(tenant)s, %(created_at)s)
ON CONFLICT (id) DO NOTHING;

-- name: ensure_principal
INSERT INTO principals (id, tenant, name, role, kind, created_at)
VALUES (%(principal_id)s, %(tenant)s, %(name)s, %(role)s, %(kind)s, %(created_at)s)
ON CONFLICT (id) DO NOTHING;

-- name: token_by_hash
SELECT tokens.id, tokens.name, tokens.token_hash, tokens.created_at, tokens.revoked,
       tokens.expires_at, tokens.last_used_at, tokens.principal_id,
       COALESCE(principals.role, tokens.role) AS role,
       COALESCE(principals.tenant, tokens.tenant) AS tenant,
       COALESCE(principals.kind, 'service') AS kind
FROM tokens LEFT JOIN principals ON principals.id = tokens.principal_id
WHERE tokens.token_hash = %(token_hash)s;

-- name: list_tokens
SELECT tokens.id, tokens.name, tokens.token_hash, tokens.created_at, tokens.revoked,
       tokens.expires_at, tokens.last_used_at, tokens.principal_id,
       COALESCE(principals.role, tokens.role) AS role,
       COALESCE(principals.tenant, tokens.tenant) AS tenant,
       COALESCE(principals.kind, 'service') AS kind
FROM tokens LEFT JOIN principals ON principals.id = tokens.principal_id
WHERE %(tenant)s::text IS NULL OR COALESCE(principals.tenant, tokens.tenant) = %(tenant)s
ORDER BY tokens.created_at, tokens.id;

-- name: revoke_token
UPDATE tokens SET revoked = TRUE
WHERE id = %(token_id)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
RETURNING id;

-- name: touch_token
UPDATE tokens SET last_used_at = %(now)s WHERE id = %(token_id)s;

-- name: insert_tenant
INSERT INTO tenants
    (id, created_at, max_concurrent, max_queued, max_runtime_s, max_limits, default_limits)
VALUES (%(id)s, %(created_at)s, %(max_concurrent)s, %(max_queued)s, %(max_runtime_s)s,
        %(max_limits)s, %(default_limits)s)
RETURNING *;

-- name: get_tenant
SELECT * FROM tenants WHERE id = %(id)s;

-- name: list_tenants
SELECT * FROM tenants ORDER BY id;

-- name: update_tenant
UPDATE tenants SET max_concurrent = %(max_concurrent)s, max_queued = %(max_queued)s,
    max_runtime_s = %(max_runtime_s)s, max_limits = %(max_limits)s,
    default_limits = %(default_limits)s
WHERE id = %(id)s RETURNING *;

-- name: enqueue
-- One submit in one statement (migration 0016; store/_pg_tenancy.py, enqueue_run).
SELECT * FROM mcpexec_enqueue(
    p_id => %(id)s, p_tenant => %(tenant)s, p_priority => %(priority)s, p_spec => %(spec)s,
    p_retry => %(retry)s, p_labels => %(labels)s, p_idempotency_key => %(idempotency_key)s,
    p_rerun_of => %(rerun_of)s, p_created_at => %(created_at)s, p_run_at => %(run_at)s,
    p_available_at => %(available_at)s, p_task => %(task)s, p_task_version => %(task_version)s,
    p_params => %(params)s, p_estimated_duration_ms => %(estimated_duration_ms)s,
    p_owner => %(owner)s, p_tool => %(tool)s, p_notify => %(notify)s,
    p_worker_labels => %(worker_labels)s, p_audit_at => %(audit_at)s, p_actor => %(actor)s,
    p_token_id => %(token_id)s, p_detail => %(detail)s, p_origin => %(origin)s,
    p_default_max_queued => %(default_max_queued)s, p_global_max_queued => %(global_max_queued)s,
    p_retried => %(retried)s);

-- name: tenant_load
SELECT (SELECT COUNT(*) FROM runs WHERE status = 'running' AND tenant = %(tenant)s) AS running,
       (SELECT COUNT(*) FROM runs WHERE status = 'pending' AND tenant = %(tenant)s) AS pending;

-- name: insert_audit
INSERT INTO audit (at, tenant, actor, token_id, action, target, detail)
VALUES (%(at)s, %(tenant)s, %(actor)s, %(token_id)s, %(action)s, %(target)s, %(detail)s);

-- name: list_audit
SELECT * FROM audit
WHERE (%(tenant)s::text IS NULL OR tenant = %(tenant)s) AND seq < %(before)s
ORDER BY seq DESC
LIMIT %(limit)s;

-- == tasks and schedules (issue 11) ============================================================

-- name: lock_task
-- Two defines of one task name take turns (the "latest version" read and the insert).
SELECT pg_advisory_xact_lock(hashtextextended('mcpexec.task:' || %(tenant)s || '/' || %(name)s, 0));

-- name: latest_task
SELECT * FROM tasks WHERE tenant = %(tenant)s AND name = %(name)s ORDER BY version DESC LIMIT 1;

-- name: task_version
SELECT * FROM tasks WHERE tenant = %(tenant)s AND name = %(name)s AND version = %(version)s;

-- name: insert_task
INSERT INTO tasks (tenant, name, version, owner, content_hash, definition, created_at, archived)
VALUES (%(tenant)s, %(name)s, %(version)s, %(owner)s, %(content_hash)s, %(definition)s,
        %(created_at)s, FALSE)
RETURNING *;

-- name: unarchive_task
UPDATE tasks SET archived = FALSE WHERE tenant = %(tenant)s AND name = %(name)s AND archived;

-- name: list_tasks
SELECT * FROM tasks AS t
WHERE (%(tenant)s::text IS NULL OR t.tenant = %(tenant)s)
  AND (%(archived)s::boolean OR NOT t.archived)
  AND t.version = (SELECT MAX(version) FROM tasks AS v
                   WHERE v.tenant = t.tenant AND v.name = t.name)
ORDER BY t.tenant, t.name;

-- name: task_versions
SELECT * FROM tasks WHERE tenant = %(tenant)s AND name = %(name)s ORDER BY version;

-- name: archive_task
UPDATE tasks SET archived = TRUE WHERE tenant = %(tenant)s AND name = %(name)s;

-- name: insert_schedule
INSERT INTO schedules (id, tenant, owner, task, task_version, params, spec, created_at,
                       updated_at, handled_until, next_fire_at)
VALUES (%(id)s, %(tenant)s, %(owner)s, %(task)s, %(task_version)s, %(params)s, %(spec)s,
        %(created_at)s, %(created_at)s, %(handled_until)s, %(next_fire_at)s)
RETURNING *;

-- name: schedule_by_id
SELECT * FROM schedules WHERE id = %(id)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s);

-- name: list_schedules
SELECT * FROM schedules WHERE %(tenant)s::text IS NULL OR tenant = %(tenant)s
ORDER BY created_at, id;

-- name: update_schedule
UPDATE schedules
SET spec = %(spec)s, task_version = %(task_version)s, params = %(params)s,
    next_fire_at = %(next_fire_at)s, handled_until = %(handled_until)s,
    updated_at = %(updated_at)s
WHERE id = %(id)s
RETURNING *;

-- name: delete_schedule
DELETE FROM schedules WHERE id = %(id)s;

-- name: due_schedules
SELECT * FROM schedules
WHERE next_fire_at IS NOT NULL AND next_fire_at <= %(now)s
ORDER BY next_fire_at
LIMIT %(limit)s;

-- name: buffered_schedules
SELECT * FROM schedules WHERE buffered_fire IS NOT NULL ORDER BY id LIMIT %(limit)s;

-- name: min_next_fire
SELECT MIN(next_fire_at) AS at FROM schedules WHERE next_fire_at IS NOT NULL;

-- name: advance_schedule
-- The cursor moves only from the value this step read: a slower process changes nothing (it
-- waits for the row lock, then finds handled_until moved and updates no row).
UPDATE schedules
SET handled_until = %(handled_until)s, next_fire_at = %(next_fire_at)s,
    missed_count = missed_count + %(missed)s
WHERE id = %(id)s AND handled_until = %(expected)s;

-- name: schedule_exists
SELECT 1 FROM schedules WHERE id = %(id)s FOR UPDATE;

-- name: insert_fire
INSERT INTO schedule_fires (schedule_id, fire_key, fire_at, outcome, run_id, message, created_at)
VALUES (%(schedule_id)s, %(fire_key)s, %(fire_at)s, %(outcome)s, %(run_id)s, %(message)s,
        %(created_at)s)
ON CONFLICT (schedule_id, fire_key) DO NOTHING;

-- name: note_fire
UPDATE schedules
SET last_fire_at = %(fire_at)s,
    last_outcome = %(outcome)s,
    last_run_id = COALESCE(%(run_id)s::text, last_run_id),
    skipped_count = skipped_count + %(skipped)s,
    buffered_fire = CASE WHEN %(buffer)s::boolean THEN %(fire_key)s ELSE buffered_fire END
WHERE id = %(schedule_id)s;

-- name: take_buffered
UPDATE schedules SET buffered_fire = NULL, last_run_id = %(run_id)s, last_outcome = 'started'
WHERE id = %(schedule_id)s AND buffered_fire = %(fire_key)s;

-- name: start_buffered_fire
UPDATE schedule_fires SET outcome = 'started', run_id = %(run_id)s
WHERE schedule_id = %(schedule_id)s AND fire_key = %(fire_key)s;

-- name: schedule_fires
SELECT * FROM schedule_fires WHERE schedule_id = %(schedule_id)s
ORDER BY fire_at DESC, created_at DESC
LIMIT %(limit)s;

-- Workflows (issue 16) ------------------------------------------------------------------------

-- name: lock_workflow
-- Two defines of one workflow name take turns (the "latest version" read and the insert).
SELECT pg_advisory_xact_lock(hashtextextended('mcpexec.workflow:' || %(tenant)s || '/' || %(name)s, 0));

-- name: latest_workflow
SELECT * FROM workflows WHERE tenant = %(tenant)s AND name = %(name)s ORDER BY version DESC LIMIT 1;

-- name: workflow_version
SELECT * FROM workflows WHERE tenant = %(tenant)s AND name = %(name)s AND version = %(version)s;

-- name: insert_workflow
INSERT INTO workflows (tenant, name, version, owner, content_hash, definition, created_at)
VALUES (%(tenant)s, %(name)s, %(version)s, %(owner)s, %(content_hash)s, %(definition)s,
        %(created_at)s)
RETURNING *;

-- name: list_workflows
SELECT DISTINCT ON (tenant, name) * FROM workflows
WHERE %(tenant)s::text IS NULL OR tenant = %(tenant)s
ORDER BY tenant, name, version DESC;

-- name: workflow_versions
SELECT * FROM workflows WHERE tenant = %(tenant)s AND name = %(name)s ORDER BY version;

-- name: insert_workflow_run
INSERT INTO workflow_runs (id, tenant, owner, workflow, version, params, status, state, revision,
                           created_at, updated_at)
VALUES (%(id)s, %(tenant)s, %(owner)s, %(workflow)s, %(version)s, %(params)s, %(status)s,
        %(state)s, 1, %(created_at)s, %(updated_at)s)
RETURNING *;

-- name: workflow_run
SELECT * FROM workflow_runs WHERE id = %(id)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s);

-- name: list_workflow_runs
SELECT * FROM workflow_runs
WHERE (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
  AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s)
  AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
ORDER BY seq DESC
LIMIT %(limit)s;

-- name: update_workflow_run
-- Compare-and-set on the revision: a concurrent engine step that read an older state changes
-- nothing and gets no row back.
UPDATE workflow_runs SET status = %(status)s, state = %(state)s, updated_at = %(now)s,
                         revision = revision + 1
WHERE id = %(id)s AND revision = %(expected)s
RETURNING *;

-- name: insert_workflow_event
INSERT INTO workflow_events (run_id, at, kind, step, detail)
VALUES (%(run_id)s, %(at)s, %(kind)s, %(step)s, %(detail)s);

-- name: workflow_events
SELECT * FROM workflow_events WHERE run_id = %(run_id)s AND seq > %(after)s
ORDER BY seq
LIMIT %(limit)s;

-- name: run_history
-- The hourly rollup (migration 0012) from %(since)s's hour on; the key leads with the hour.
SELECT hour, series, bucket, SUM(n)::BIGINT AS n FROM run_rollup
WHERE hour >= %(since)s - mod(%(since)s, 3600000000)
  AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
GROUP BY hour, series, bucket
ORDER BY hour;

-- name: prune_history
-- The rollup of the hours before %(before)s's, oldest first, %(limit)s rows at a time (the key
-- leads with the hour: a range of the primary key). The finish trigger only writes the hour of
-- a finish, never one this deletes.
DELETE FROM run_rollup WHERE (hour, tenant, series, bucket) IN (
    SELECT hour, tenant, series, bucket FROM run_rollup
    WHERE hour < %(before)s - mod(%(before)s, 3600000000)
    ORDER BY hour LIMIT %(limit)s
);
