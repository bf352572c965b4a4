-- Swaps, their append-only events, and the transactional outbox.
-- UUIDs and JSON are TEXT so that the same queries run through sqlx's Any
-- driver on PostgreSQL and SQLite.

CREATE TABLE swaps (
    swap_id          TEXT    PRIMARY KEY,
    version          BIGINT  NOT NULL CHECK (version >= 1),
    state            TEXT    NOT NULL,
    terminal         BOOLEAN NOT NULL,
    data             TEXT    NOT NULL,
    idempotency_key  TEXT    UNIQUE,
    deposit_chain    TEXT    NOT NULL,
    deposit_address  TEXT    NOT NULL,
    created_at_ms    BIGINT  NOT NULL,
    updated_at_ms    BIGINT  NOT NULL,
    CONSTRAINT swaps_deposit_address_key UNIQUE (deposit_chain, deposit_address)
);

CREATE INDEX swaps_active_idx ON swaps (created_at_ms, swap_id) WHERE NOT terminal;

CREATE TABLE swap_events (
    event_id        TEXT   PRIMARY KEY,
    swap_id         TEXT   NOT NULL REFERENCES swaps (swap_id),
    version         BIGINT NOT NULL,
    kind            TEXT   NOT NULL,
    payload         TEXT   NOT NULL,
    occurred_at_ms  BIGINT NOT NULL,
    recorded_at_ms  BIGINT NOT NULL,
    CONSTRAINT swap_events_swap_version_key UNIQUE (swap_id, version)
);

CREATE TABLE outbox (
    seq              BIGSERIAL PRIMARY KEY,
    message_id       TEXT   NOT NULL UNIQUE,
    topic            TEXT   NOT NULL,
    key              TEXT   NOT NULL,
    payload          TEXT   NOT NULL,
    created_at_ms    BIGINT NOT NULL,
    published_at_ms  BIGINT
);

CREATE INDEX outbox_unpublished_idx ON outbox (seq) WHERE published_at_ms IS NULL;
