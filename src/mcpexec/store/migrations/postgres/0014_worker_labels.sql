-- Worker labels / routing (issue 13): the labels a run asks its worker to have, as a sorted
-- JSON array of distinct strings (text, like the other JSON columns); '[]' (every run stored
-- before): any worker claims it. Adding a column with a constant default rewrites no rows.
ALTER TABLE runs ADD COLUMN worker_labels TEXT NOT NULL DEFAULT '[]';
-- The claim of a worker without labels walks only the runs that ask for none, in the tenant's
-- claim order (runs_tenant_ready with this predicate): runs waiting for a labelled worker never
-- lengthen its scan.
CREATE INDEX runs_tenant_ready_any ON runs (tenant, priority DESC, seq)
    WHERE status = 'pending' AND worker_labels = '[]';

-- Vacuum-friendly queue: a run's row is updated two or three times (claim, lease renewals,
-- finish), each time changing an indexed column, so every run leaves dead tuples behind. With
-- the default autovacuum_vacuum_scale_factor (20 %) a table holding 1M runs of history is only
-- vacuumed after 200k dead tuples (over half an hour at 50 runs/s, docs/benchmarks.md); at 1 %
-- autovacuum keeps the queue's dead tuples to about 1 % of the table under steady load. (SQLite
-- has no counterpart: its 0014 adds the column and index only.)
ALTER TABLE runs SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,
                      autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE attempts SET (autovacuum_vacuum_scale_factor = 0.01,
                          autovacuum_vacuum_threshold = 1000);
