-- Which store this schema holds: `publish_in` records an event only in a transaction on it.
CREATE TABLE IF NOT EXISTS tidings_store (
    id TEXT NOT NULL
);
INSERT INTO tidings_store (id)
SELECT gen_random_uuid()::text
WHERE NOT EXISTS (SELECT 1 FROM tidings_store);
