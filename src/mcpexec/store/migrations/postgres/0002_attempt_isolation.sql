-- Every attempt records the isolation actually applied and the limits in force (JSON object).
ALTER TABLE attempts ADD COLUMN isolation TEXT;
ALTER TABLE attempts ADD COLUMN limits TEXT;
