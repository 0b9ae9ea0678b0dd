-- PLACEHOLDER on the `chaos` branch only: number 0012 belongs to another branch (hooks). At
-- merge, delete this file and keep that branch's 0012 (the runner refuses gaps, so 0013 needs
-- a 0012 to exist here).
SELECT 1;
