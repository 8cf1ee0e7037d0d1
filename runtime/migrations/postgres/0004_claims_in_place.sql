-- Claims that write no index entry.
--
-- Which handlers a claim holds is kept per handler, in tidings_handler_claims: the range of
-- delivery ids of its last claim. A handler is held while a delivery of that range is claimed
-- (its claimed_until is to come); every delivery a claim holds is in its handler's range. This
-- replaces the index on (handler, claimed_until), which every claim, extension and completion
-- of every delivery wrote to.
CREATE TABLE IF NOT EXISTS tidings_handler_claims (
    handler  TEXT   PRIMARY KEY,
    first_id BIGINT NOT NULL,
    last_id  BIGINT NOT NULL
) WITH (fillfactor = 50);
-- The claims made before this migration, expired or not.
INSERT INTO tidings_handler_claims (handler, first_id, last_id)
SELECT handler, MIN(id), MAX(id) FROM tidings_deliveries
WHERE claimed_until IS NOT NULL GROUP BY handler
ON CONFLICT (handler) DO NOTHING;
DROP INDEX IF EXISTS tidings_deliveries_claimed;

-- A claim then rewrites no indexed column of a delivery or an outbox row (claimed_until,
-- attempts): with room left on the row's page, PostgreSQL writes the new version there and
-- no index entry (a HOT update). A claim of 64 outbox rows took 0.8 ms instead of 1.3 to 1.5,
-- one of 64 deliveries 0.65 ms instead of 1.0 to 1.3. Rows leave these tables once done, so the
-- room costs little but while a backlog waits. It applies to the pages written from now on.
ALTER TABLE tidings_deliveries SET (fillfactor = 50);
ALTER TABLE tidings_outbox SET (fillfactor = 50);
