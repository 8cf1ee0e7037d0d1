-- A claim walks each handler's deliveries in the order they were recorded and stops at its
-- limit, instead of sorting every waiting delivery of the handler.
CREATE INDEX IF NOT EXISTS tidings_deliveries_handler ON tidings_deliveries (handler, id);
