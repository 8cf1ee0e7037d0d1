-- Completions planned once per connection.
--
-- tidings_complete was a LANGUAGE sql function: PostgreSQL before 18 parses and plans the body of
-- such a function (one that cannot be inlined: a SET clause, and a body that is not a SELECT)
-- again in each transaction that calls it. Every step of the dispatcher is a transaction of its own, so
-- each one parsed and planned the DELETE anew: about a ninth of the server's time while a
-- backlog drains. A LANGUAGE plpgsql function keeps the plans of its statements for the life of
-- the connection. Same arguments, same result: the ids deleted.
CREATE OR REPLACE FUNCTION tidings_complete(bigint[], integer[]) RETURNS SETOF bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    RETURN QUERY
    DELETE FROM tidings_deliveries d USING unnest($1, $2) AS c(id, attempt)
    WHERE d.id = c.id AND (c.attempt IS NULL OR d.attempts = c.attempt)
    RETURNING d.id;
END
$$;
