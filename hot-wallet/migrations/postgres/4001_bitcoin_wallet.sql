-- Bitcoin payouts: the hot wallet's own addresses, its unspent outputs, and
-- payments that wait (for funds, or for the desk's approval).

-- Addresses of the wallet's internal chain (m/84'/coin'/0'/1/index): the
-- inventory address (index 0) and one fresh change address per payout.
CREATE TABLE hw_wallet_addresses (
    network        TEXT NOT NULL,
    address        TEXT NOT NULL,
    key_chain      BIGINT NOT NULL,
    key_index      BIGINT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (network, address),
    UNIQUE (network, key_chain, key_index)
);

-- Every output paying one of the wallet's Bitcoin addresses (deposit
-- addresses included: deposits join the hot UTXO set), as the node gateway
-- reports it. spent_by names the payment whose signed transaction spends it.
CREATE TABLE hw_utxos (
    network        TEXT NOT NULL,
    txid           TEXT NOT NULL,
    vout           BIGINT NOT NULL,
    address        TEXT NOT NULL,
    key_chain      BIGINT NOT NULL,
    key_index      BIGINT NOT NULL,
    value_sats     BIGINT NOT NULL,
    confirmations  BIGINT NOT NULL,
    dropped        BIGINT NOT NULL DEFAULT 0,
    spent_by       TEXT,
    updated_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (network, txid, vout)
);
CREATE INDEX hw_utxos_spendable ON hw_utxos (network, spent_by, dropped, confirmations);

-- Why a payment is not signed yet ('held': it could not be built, e.g. not
-- enough confirmed funds; retried later), when it is next tried, and the
-- desk's approval of a payment over the hot wallet's limits.
ALTER TABLE hw_payments ADD COLUMN hold_reason TEXT;
ALTER TABLE hw_payments ADD COLUMN next_attempt_at_ms BIGINT;
ALTER TABLE hw_payments ADD COLUMN approved_by TEXT;
ALTER TABLE hw_payments ADD COLUMN approved_at_ms BIGINT;
