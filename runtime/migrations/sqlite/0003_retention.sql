-- Published integration rows, kept for a while when retention archives them.
CREATE TABLE IF NOT EXISTS tidings_outbox_archive (
    id             INTEGER PRIMARY KEY,
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
    published_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tidings_outbox_archive_published ON tidings_outbox_archive (published_at);

-- Inbox entries expire after the retention window.
CREATE INDEX IF NOT EXISTS tidings_inbox_received ON tidings_inbox (received_at);

-- A claim skips the handlers whose deliveries another claim holds.
CREATE INDEX IF NOT EXISTS tidings_deliveries_claimed ON tidings_deliveries (handler, claimed_until);
