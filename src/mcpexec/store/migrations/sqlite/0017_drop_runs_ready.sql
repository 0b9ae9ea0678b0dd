-- runs_ready (pending runs by priority, 0001) has been read by no statement since the claim
-- went per tenant (runs_tenant_ready, runs_tenant_ready_any): every submit still wrote an
-- entry into it. The claim's statements name their indexes (tests/unit/test_sqlite_plans.py).
DROP INDEX IF EXISTS runs_ready;
