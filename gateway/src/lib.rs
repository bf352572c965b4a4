//! Client API: websocket and REST for quotes, RFQ, accept and status.
