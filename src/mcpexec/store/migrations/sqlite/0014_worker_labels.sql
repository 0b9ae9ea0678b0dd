-- Worker labels / routing (issue 13): the labels a run asks its worker to have, as a sorted
-- JSON array of distinct strings; '[]' (every run stored before): any worker claims it.
ALTER TABLE runs ADD COLUMN worker_labels TEXT NOT NULL DEFAULT '[]';
-- The claim of a worker without labels walks only the runs that ask for none, in the tenant's
-- claim order (runs_tenant_ready with this predicate): runs waiting for a labelled worker never
-- lengthen its scan.
CREATE INDEX runs_tenant_ready_any ON runs (tenant, priority DESC, seq)
    WHERE status = 'pending' AND worker_labels = '[]';
