-- The outbox of tidings on PostgreSQL, in the store's schema (the migration runs with the
-- schema as its search_path): one row per (event, handler) delivery, the integration outbox
-- and its archive, the inbox and the dead letters.

CREATE TABLE IF NOT EXISTS tidings_deliveries (
    id             BIGSERIAL   PRIMARY KEY,
    event_id       UUID        NOT NULL,
    kind           TEXT        NOT NULL,
    name           TEXT        NOT NULL,
    version        INTEGER     NOT NULL,
    occurred_at    TIMESTAMPTZ NOT NULL,
    correlation_id UUID        NOT NULL,
    causation_id   UUID,
    traceparent    TEXT,
    source         TEXT        NOT NULL,
    payload        JSONB       NOT NULL,
    handler        TEXT        NOT NULL,
    attempts       INTEGER     NOT NULL DEFAULT 0,
    due_at         TIMESTAMPTZ NOT NULL,
    claimed_until  TIMESTAMPTZ,
    last_error     TEXT
);
CREATE INDEX IF NOT EXISTS tidings_deliveries_due ON tidings_deliveries (due_at, id);
CREATE INDEX IF NOT EXISTS tidings_deliveries_claimed ON tidings_deliveries (handler, claimed_until);

CREATE TABLE IF NOT EXISTS tidings_outbox (
    id             BIGSERIAL   PRIMARY KEY,
    event_id       UUID        NOT NULL,
    name           TEXT        NOT NULL,
    version        INTEGER     NOT NULL,
    occurred_at    TIMESTAMPTZ NOT NULL,
    correlation_id UUID        NOT NULL,
    causation_id   UUID,
    traceparent    TEXT,
    source         TEXT        NOT NULL,
    payload        JSONB       NOT NULL,
    ordering_key   TEXT,
    attempts       INTEGER     NOT NULL DEFAULT 0,
    due_at         TIMESTAMPTZ NOT NULL,
    claimed_until  TIMESTAMPTZ,
    last_error     TEXT
);
CREATE INDEX IF NOT EXISTS tidings_outbox_key ON tidings_outbox (ordering_key, id);
CREATE INDEX IF NOT EXISTS tidings_outbox_due ON tidings_outbox (due_at, id);

CREATE TABLE IF NOT EXISTS tidings_outbox_archive (
    id             BIGINT      PRIMARY KEY,
    event_id       UUID        NOT NULL,
    name           TEXT        NOT NULL,
    version        INTEGER     NOT NULL,
    occurred_at    TIMESTAMPTZ NOT NULL,
    correlation_id UUID        NOT NULL,
    causation_id   UUID,
    traceparent    TEXT,
    source         TEXT        NOT NULL,
    payload        JSONB       NOT NULL,
    ordering_key   TEXT,
    published_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS tidings_outbox_archive_published ON tidings_outbox_archive (published_at);

CREATE TABLE IF NOT EXISTS tidings_inbox (
    handler     TEXT        NOT NULL,
    event_id    UUID        NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (handler, event_id)
);
CREATE INDEX IF NOT EXISTS tidings_inbox_received ON tidings_inbox (received_at);

CREATE TABLE IF NOT EXISTS tidings_dead_letters (
    id             BIGSERIAL   PRIMARY KEY,
    event_id       UUID        NOT NULL,
    kind           TEXT        NOT NULL,
    name           TEXT        NOT NULL,
    version        INTEGER     NOT NULL,
    occurred_at    TIMESTAMPTZ NOT NULL,
    correlation_id UUID        NOT NULL,
    causation_id   UUID,
    traceparent    TEXT,
    source         TEXT        NOT NULL,
    payload        JSONB       NOT NULL,
    handler        TEXT,
    attempts       INTEGER     NOT NULL,
    error          TEXT        NOT NULL,
    at             TIMESTAMPTZ NOT NULL
);
