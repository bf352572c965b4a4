-- Gateway: partner apps, the swaps they opened, and webhook deliveries.

-- A partner app. Its API key is stored only as its SHA-256 (hex); the
-- webhook secret is kept as given because every delivery is signed with it.
CREATE TABLE gw_partners (
    partner_id      TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    api_key_sha256  TEXT NOT NULL UNIQUE,
    fee_bps         INTEGER NOT NULL,
    webhook_url     TEXT,
    webhook_secret  TEXT,
    active          INTEGER NOT NULL,
    created_at_ms   INTEGER NOT NULL
);

-- Which partner opened a swap (written before the swap is opened).
CREATE TABLE gw_swap_partners (
    swap_id        TEXT PRIMARY KEY,
    partner_id     TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL
);

-- One webhook delivery per (partner, event): the exact signed body, its
-- state (pending, delivered, failed) and when it is tried next.
CREATE TABLE gw_webhook_deliveries (
    delivery_id         TEXT PRIMARY KEY,
    partner_id          TEXT NOT NULL,
    event_id            TEXT NOT NULL,
    swap_id             TEXT NOT NULL,
    url                 TEXT NOT NULL,
    body                TEXT NOT NULL,
    status              TEXT NOT NULL,
    attempts            INTEGER NOT NULL,
    next_attempt_at_ms  INTEGER NOT NULL,
    last_status_code    INTEGER,
    last_error          TEXT,
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL,
    UNIQUE (partner_id, event_id)
);
CREATE INDEX gw_webhook_deliveries_due ON gw_webhook_deliveries (status, next_attempt_at_ms);
CREATE INDEX gw_webhook_deliveries_partner ON gw_webhook_deliveries (partner_id, created_at_ms);

-- Every attempt of every delivery, appended.
CREATE TABLE gw_webhook_attempts (
    delivery_id   TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    at_ms         INTEGER NOT NULL,
    status_code   INTEGER,
    error         TEXT,
    duration_ms   INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
