-- The text an admin's audit search matches: each entry's detail folded by
-- the node (Unicode lowercase, Latin accents dropped, `store::audit::fold`),
-- the same on SQLite and PostgreSQL, whose LOWER() differ (SQLite's folds
-- ASCII only). Derived from the detail, so outside the hash chain. Rows
-- written before this column are filled when the node starts.
ALTER TABLE audit_log ADD COLUMN folded TEXT;
