-- Which store this file holds: `publish_in` records an event only in a transaction on it.
CREATE TABLE IF NOT EXISTS tidings_store (
    id TEXT NOT NULL
);
INSERT INTO tidings_store (id)
SELECT lower(hex(randomblob(16)))
WHERE NOT EXISTS (SELECT 1 FROM tidings_store);
