-- A registered worker's labels (issue 13): what `mcpexec worker --labels` gave it, shown by
-- GET /api/v1/workers and the dashboard's workers page; a JSON array of strings, sorted.
ALTER TABLE workers ADD COLUMN labels TEXT NOT NULL DEFAULT '[]';
