-- Hot wallet: deposit address allocation and payments.

-- Next unused derivation index per network; bumped atomically.
CREATE TABLE hw_address_index (
    network     TEXT PRIMARY KEY,
    next_index  INTEGER NOT NULL
);

-- Every deposit address ever handed out; never reused.
CREATE TABLE hw_deposit_addresses (
    network           TEXT NOT NULL,
    address           TEXT NOT NULL,
    derivation_index  INTEGER NOT NULL,
    swap_id           TEXT NOT NULL,
    created_at_ms     INTEGER NOT NULL,
    PRIMARY KEY (network, address),
    UNIQUE (network, derivation_index)
);

-- Payments (payouts and refunds): the intent is written before signing,
-- the signed transaction before broadcast.
CREATE TABLE hw_payments (
    payment_id     TEXT PRIMARY KEY,
    swap_id        TEXT NOT NULL,
    kind           TEXT NOT NULL,
    network        TEXT NOT NULL,
    asset          TEXT NOT NULL,
    address        TEXT NOT NULL,
    amount         TEXT NOT NULL,
    status         TEXT NOT NULL,
    txid           TEXT,
    raw_tx         TEXT,
    nonce          INTEGER,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL
);
CREATE INDEX hw_payments_txid ON hw_payments (txid);
CREATE INDEX hw_payments_status ON hw_payments (status);
