-- Liquidity: hedge orders, written before they are first sent (the client
-- order id is the venue's idempotency key) and updated with each answer.
CREATE TABLE hedge_orders (
    client_order_id TEXT PRIMARY KEY,
    swap_id TEXT NOT NULL,
    quote_id TEXT NOT NULL,
    venue TEXT NOT NULL,
    market TEXT NOT NULL,          -- e.g. BTC/USD
    side TEXT NOT NULL,            -- 'buy' or 'sell'
    qty TEXT NOT NULL,             -- exact decimal, base asset
    status TEXT NOT NULL,          -- pending, filled, partially_filled, rejected, gave_up
    reason TEXT,                   -- why rejected or given up
    filled_qty TEXT NOT NULL,
    avg_price TEXT,
    venue_order_id TEXT,
    attempts BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,    -- ms since the Unix epoch
    updated_at BIGINT NOT NULL
);
CREATE INDEX hedge_orders_status ON hedge_orders (status);
