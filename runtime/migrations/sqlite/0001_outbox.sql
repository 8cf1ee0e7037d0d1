-- The outbox of tidings on SQLite: one row per (event, handler) delivery, the integration
-- outbox, the inbox and the dead letters. Times are microseconds since the Unix epoch.

CREATE TABLE IF NOT EXISTS tidings_deliveries (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    occurred_at    TEXT    NOT NULL,
    correlation_id TEXT    NOT NULL,
    causation_id   TEXT,
    traceparent    TEXT,
    source         TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    handler        TEXT    NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    due_at         INTEGER NOT NULL,
    claimed_until  INTEGER,
    last_error     TEXT
);
CREATE INDEX IF NOT EXISTS tidings_deliveries_due ON tidings_deliveries (due_at, id);

CREATE TABLE IF NOT EXISTS tidings_outbox (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    occurred_at    TEXT    NOT NULL,
    correlation_id TEXT    NOT NULL,
    causation_id   TEXT,
    traceparent    TEXT,
    source         TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    ordering_key   TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    due_at         INTEGER NOT NULL,
    claimed_until  INTEGER,
    last_error     TEXT
);
CREATE INDEX IF NOT EXISTS tidings_outbox_key ON tidings_outbox (ordering_key, id);
CREATE INDEX IF NOT EXISTS tidings_outbox_due ON tidings_outbox (due_at, id);

CREATE TABLE IF NOT EXISTS tidings_inbox (
    handler     TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (handler, event_id)
);

CREATE TABLE IF NOT EXISTS tidings_dead_letters (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT    NOT NULL,
    event_name TEXT    NOT NULL,
    handler    TEXT,
    attempts   INTEGER NOT NULL,
    error      TEXT    NOT NULL,
    at         TEXT    NOT NULL
);
