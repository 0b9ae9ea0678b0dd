-- runs_ready (pending runs by priority, 0001) has been read by no statement since the claim
-- went per tenant (runs_tenant_ready, runs_tenant_ready_any): pg_stat_user_indexes showed no
-- scan of it through a whole benchmark, while every submit wrote an entry into it.
DROP INDEX IF EXISTS runs_ready;
