-- What claims walk instead of sorting a backlog. The dispatcher: each handler's deliveries in
-- the order they were recorded, up to its limit.
CREATE INDEX IF NOT EXISTS tidings_deliveries_handler ON tidings_deliveries (handler, id);
-- The relay: the rows without a key, oldest first (the heads of keys come from
-- tidings_outbox_key).
CREATE INDEX IF NOT EXISTS tidings_outbox_unkeyed ON tidings_outbox (id) WHERE ordering_key IS NULL;
