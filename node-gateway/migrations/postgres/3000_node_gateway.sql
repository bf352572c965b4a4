-- Node gateway: the watch list and, per network, the followed chain's tip
-- (the cursor) and its recent blocks (for reorg detection after a restart).
CREATE TABLE watched (
    network TEXT NOT NULL,
    kind TEXT NOT NULL,          -- 'address' or 'tx'
    value TEXT NOT NULL,         -- canonical address or txid
    added_at BIGINT NOT NULL,    -- ms since the Unix epoch
    PRIMARY KEY (network, kind, value)
);

CREATE TABLE chain_cursor (
    network TEXT PRIMARY KEY,
    height BIGINT NOT NULL,
    hash TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE chain_recent_blocks (
    network TEXT NOT NULL,
    height BIGINT NOT NULL,
    hash TEXT NOT NULL,
    parent_hash TEXT NOT NULL,
    PRIMARY KEY (network, height)
);
