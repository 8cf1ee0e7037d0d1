-- The dispatcher's step in one statement.
--
-- Between two batches the dispatcher completes the batch's deliveries and claims the next. That
-- took four statements, each a round trip: BEGIN with the claims' lock, the completion, the
-- claim, COMMIT. As one call of tidings_complete_and_claim, a transaction of its own, it takes
-- one.

-- The handlers a claim holds: those with a delivery still claimed in the range of their last
-- claim (tidings_handler_claims), where every delivery a claim holds is. A few rows of the
-- (handler, id) index per handler: no index tells a claimed delivery, so that a claim rewrites
-- no indexed column (and is a HOT update).
CREATE OR REPLACE VIEW tidings_held_handlers AS
SELECT l.handler FROM tidings_handler_claims l WHERE EXISTS (
    SELECT 1 FROM tidings_deliveries c
    WHERE c.handler = l.handler AND c.id BETWEEN l.first_id AND l.last_id
      AND c.claimed_until >= now());

-- Completes the deliveries of ids $1, each only if still claimed at its attempt in $2 (at any,
-- for a null attempt): deletes them, and returns the ids deleted.
CREATE OR REPLACE FUNCTION tidings_complete(bigint[], integer[]) RETURNS SETOF bigint
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    DELETE FROM tidings_deliveries d USING unnest($1, $2) AS c(id, attempt)
    WHERE d.id = c.id AND (c.attempt IS NULL OR d.attempts = c.attempt)
    RETURNING d.id
$$;

-- Completes the deliveries of done_ids at done_attempts (see tidings_complete), then claims up
-- to max_claimed deliveries of the handlers named in handler_names for a lease of lease_micros
-- microseconds, and returns them.
--
-- - Claims take turns: the lock named lock_name is held until the transaction ends, so that two
--   claims cannot both see a handler free. No row lock is needed: a row changed meanwhile (its
--   late owner retried it) is checked again against the conditions of the update itself.
-- - A claim skips the handlers another claim holds (tidings_held_handlers): each handler's
--   deliveries run in one process at a time, in the order they were recorded. The claimed
--   deliveries' ids, handler by handler, are the range that tells their handler held.
-- - The claim walks each free handler's deliveries in order on the (handler, id) index, from
--   the id of walk_starts at the handler's place (the store's choice: the lowest id, or its
--   claim before while a backlog drains), and stops at the limit. Sorting is off, so that stale
--   statistics (a backlog just recorded) do not make it sort the whole backlog; so is JIT, which
--   such a cost estimate would start.
-- - Unless flush, the commit does not wait for the disk: a claim is a lease, and a completion
--   that records nothing else is lost in a crash of the database as in a crash before it.
CREATE OR REPLACE FUNCTION tidings_complete_and_claim(
    lock_name text, done_ids bigint[], done_attempts integer[], flush boolean,
    lease_micros bigint, max_claimed bigint, handler_names text[], walk_starts bigint[])
RETURNS SETOF tidings_deliveries
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_sort = off
SET jit = off
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(lock_name));
    IF NOT flush THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    PERFORM tidings_complete(done_ids, done_attempts);
    RETURN QUERY
    WITH claimed AS (
        UPDATE tidings_deliveries
        SET claimed_until = now() + lease_micros * interval '1 microsecond',
            attempts = attempts + 1
        WHERE id IN (
            SELECT x.id FROM unnest(handler_names, walk_starts) AS h(handler, start)
            CROSS JOIN LATERAL (
                SELECT o.id FROM tidings_deliveries o
                WHERE o.handler = h.handler AND o.id >= h.start AND o.due_at <= now()
                  AND coalesce(o.claimed_until, '-infinity') < now()
                ORDER BY o.id LIMIT max_claimed) x
            WHERE h.handler NOT IN (SELECT handler FROM tidings_held_handlers)
            ORDER BY x.id LIMIT max_claimed)
        AND due_at <= now() AND coalesce(claimed_until, '-infinity') < now()
        RETURNING *),
    ranges AS (
        INSERT INTO tidings_handler_claims (handler, first_id, last_id)
        SELECT handler, min(id), max(id) FROM claimed GROUP BY handler
        ON CONFLICT (handler) DO UPDATE
        SET first_id = excluded.first_id, last_id = excluded.last_id)
    SELECT * FROM claimed;
END
$$;
