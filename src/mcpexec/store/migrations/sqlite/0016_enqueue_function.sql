-- PostgreSQL's 0016 moves its submit into one server-side function (mcpexec_enqueue), so that
-- no lock is held across a round trip to the client. SQLite needs nothing: its enqueue runs
-- under the one write lock, in the group commit of store/_sqlite_db.py. Kept so that both
-- dialects have the same migration numbers.
SELECT 1;
