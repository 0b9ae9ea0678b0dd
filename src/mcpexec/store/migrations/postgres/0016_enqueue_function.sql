-- The submit in ONE statement (store/_pg_tenancy.py, enqueue_run): idempotency, the queue
-- limits, the run, its audit entry and the workers' NOTIFY, run by the server. Called in
-- autocommit, the statement is its own transaction and the server commits it as soon as it
-- ends: the tenant's run_counts row that the insert's trigger locks (the exact queue count, see
-- below) is held for the COMMIT alone, never across a round trip to a busy client (measured:
-- submits and claims of one tenant queued behind transactions "idle in transaction" while
-- their client process was busy). synchronous_commit is on for this transaction: the answer
-- means the run is durable.
--
-- The tenant's queue limit is checked AFTER the insert, against the run_counts row the
-- insert's trigger (0009) has just updated and keeps locked until COMMIT: a concurrent
-- submitter of the tenant (any process) waits for that COMMIT, then counts this run (or not,
-- if it was refused and rolled back). Exact, no COUNT over the backlog, no advisory lock. The
-- server-wide limit, when set, is counted under an advisory lock taken BEFORE the insert (so
-- a holder of it may wait for a tenant's row, never the other way round).
--
-- Returns the run (the existing one for a known idempotency key, or, when p_retried, for a
-- retry after a lost connection whose first try committed); a full queue raises P0001 with
-- HINT 'mcpexec.queue_full' and the figures as JSON in DETAIL.

CREATE FUNCTION mcpexec_enqueue(
    p_id runs.id%TYPE, p_tenant runs.tenant%TYPE, p_priority runs.priority%TYPE,
    p_spec runs.spec%TYPE, p_retry runs.retry%TYPE, p_labels runs.labels%TYPE,
    p_idempotency_key runs.idempotency_key%TYPE, p_rerun_of runs.rerun_of%TYPE,
    p_created_at runs.created_at%TYPE, p_run_at runs.run_at%TYPE,
    p_available_at runs.available_at%TYPE, p_task runs.task%TYPE,
    p_task_version runs.task_version%TYPE, p_params runs.params%TYPE,
    p_estimated_duration_ms runs.estimated_duration_ms%TYPE, p_owner runs.owner%TYPE,
    p_tool runs.tool%TYPE, p_notify runs.notify%TYPE, p_worker_labels runs.worker_labels%TYPE,
    p_audit_at BIGINT, p_actor TEXT, p_token_id TEXT, p_detail TEXT, p_origin TEXT,
    p_default_max_queued BIGINT, p_global_max_queued BIGINT, p_retried BOOLEAN
) RETURNS SETOF runs
LANGUAGE plpgsql AS $$
DECLARE
    r runs;
    all_pending BIGINT;
    pending BIGINT;
    lim BIGINT;
BEGIN
    PERFORM set_config('synchronous_commit', 'on', true);
    IF p_idempotency_key IS NOT NULL THEN
        SELECT * INTO r FROM runs WHERE tenant = p_tenant AND idempotency_key = p_idempotency_key;
        IF FOUND THEN
            RETURN NEXT r;
            RETURN;
        END IF;
    END IF;
    IF p_retried THEN
        SELECT * INTO r FROM runs WHERE id = p_id AND tenant = p_tenant;
        IF FOUND THEN
            RETURN NEXT r;
            RETURN;
        END IF;
    END IF;
    IF p_global_max_queued IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('mcpexec.queue', 0));
        SELECT COALESCE(SUM(n), 0) INTO all_pending FROM run_counts WHERE status = 'pending';
    END IF;
    INSERT INTO runs (id, tenant, status, priority, spec, retry, labels, idempotency_key,
                      rerun_of, created_at, run_at, available_at, task, task_version, params,
                      estimated_duration_ms, owner, tool, notify, worker_labels)
    VALUES (p_id, p_tenant, 'pending', p_priority, p_spec, p_retry, p_labels, p_idempotency_key,
            p_rerun_of, p_created_at, p_run_at, p_available_at, p_task, p_task_version,
            p_params, p_estimated_duration_ms, p_owner, p_tool, p_notify, p_worker_labels)
    ON CONFLICT (tenant, idempotency_key) DO NOTHING
    RETURNING * INTO r;
    IF NOT FOUND THEN  -- a concurrent submit with the same key committed first
        SELECT * INTO r FROM runs WHERE tenant = p_tenant AND idempotency_key = p_idempotency_key;
        RETURN NEXT r;
        RETURN;
    END IF;
    SELECT n - 1 INTO pending FROM run_counts WHERE tenant = p_tenant AND status = 'pending';
    SELECT max_queued INTO lim FROM tenants WHERE id = p_tenant;
    lim := COALESCE(lim, p_default_max_queued);
    IF lim IS NOT NULL AND pending >= lim THEN
        RAISE EXCEPTION 'tenant % has % runs queued', p_tenant, pending USING
            HINT = 'mcpexec.queue_full',
            DETAIL = json_build_object('tenant', p_tenant, 'max_queued', lim, 'queued', pending);
    END IF;
    IF all_pending IS NOT NULL AND all_pending >= p_global_max_queued THEN
        RAISE EXCEPTION 'the server has % runs queued', all_pending USING
            HINT = 'mcpexec.queue_full',
            DETAIL = json_build_object('tenant', NULL, 'max_queued', p_global_max_queued,
                                       'queued', all_pending);
    END IF;
    INSERT INTO audit (at, tenant, actor, token_id, action, target, detail)
    VALUES (p_audit_at, p_tenant, p_actor, p_token_id, 'submit', p_id, p_detail);
    PERFORM pg_notify('mcpexec_work', p_origin);
    RETURN NEXT r;
END;
$$;
