-- reserved for the tenancy migration (an empty step, as in the SQLite dialect)
SELECT 1;
