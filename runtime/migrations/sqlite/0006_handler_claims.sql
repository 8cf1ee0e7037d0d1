-- Claims that write no index entry.
--
-- Which handlers a claim holds is kept per handler, in tidings_handler_claims: the range of
-- delivery ids of its last claim. A handler is held while a delivery of that range is claimed
-- (its claimed_until is to come); every delivery a claim holds is in its handler's range. This
-- replaces the index on (handler, claimed_until), which every claim, extension and completion
-- of every delivery wrote to.
CREATE TABLE IF NOT EXISTS tidings_handler_claims (
    handler  TEXT    PRIMARY KEY,
    first_id INTEGER NOT NULL,
    last_id  INTEGER NOT NULL
) WITHOUT ROWID;
-- The claims made before this migration, expired or not.
INSERT OR IGNORE INTO tidings_handler_claims (handler, first_id, last_id)
SELECT handler, MIN(id), MAX(id) FROM tidings_deliveries
WHERE claimed_until IS NOT NULL GROUP BY handler;
DROP INDEX IF EXISTS tidings_deliveries_claimed;
