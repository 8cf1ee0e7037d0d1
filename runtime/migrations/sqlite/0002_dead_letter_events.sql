-- Dead letters keep their event, so that they can be replayed.
ALTER TABLE tidings_dead_letters ADD COLUMN kind TEXT;
ALTER TABLE tidings_dead_letters ADD COLUMN version INTEGER;
ALTER TABLE tidings_dead_letters ADD COLUMN occurred_at TEXT;
ALTER TABLE tidings_dead_letters ADD COLUMN correlation_id TEXT;
ALTER TABLE tidings_dead_letters ADD COLUMN causation_id TEXT;
ALTER TABLE tidings_dead_letters ADD COLUMN traceparent TEXT;
ALTER TABLE tidings_dead_letters ADD COLUMN source TEXT;
ALTER TABLE tidings_dead_letters ADD COLUMN payload TEXT;
-- The same name as in the other tables, so every table holds an event in the same columns.
ALTER TABLE tidings_dead_letters RENAME COLUMN event_name TO name;
