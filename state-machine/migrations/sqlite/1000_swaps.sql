-- Swaps, their append-only events, and the transactional outbox.
-- UUIDs and JSON are TEXT; `terminal` is 0/1 (sqlx's Any driver has no
-- SQLite BOOLEAN).

CREATE TABLE swaps (
    swap_id          TEXT    PRIMARY KEY NOT NULL,
    version          INTEGER NOT NULL CHECK (version >= 1),
    state            TEXT    NOT NULL,
    terminal         INTEGER NOT NULL CHECK (terminal IN (0, 1)),
    data             TEXT    NOT NULL,
    idempotency_key  TEXT    UNIQUE,
    deposit_chain    TEXT    NOT NULL,
    deposit_address  TEXT    NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL,
    UNIQUE (deposit_chain, deposit_address)
);

CREATE INDEX swaps_active_idx ON swaps (created_at_ms, swap_id) WHERE NOT terminal;

CREATE TABLE swap_events (
    event_id        TEXT    PRIMARY KEY NOT NULL,
    swap_id         TEXT    NOT NULL REFERENCES swaps (swap_id),
    version         INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    occurred_at_ms  INTEGER NOT NULL,
    recorded_at_ms  INTEGER NOT NULL,
    UNIQUE (swap_id, version)
);

CREATE TABLE outbox (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id       TEXT    NOT NULL UNIQUE,
    topic            TEXT    NOT NULL,
    key              TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    published_at_ms  INTEGER
);

CREATE INDEX outbox_unpublished_idx ON outbox (seq) WHERE published_at_ms IS NULL;
