//! JSON-RPC over HTTP: the transport shared by the Bitcoin Core (1.0) and
//! Ethereum (2.0) clients, and the typed errors a node can answer with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// Which JSON-RPC dialect a node speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Bitcoin Core: `{"jsonrpc":"1.0",...}`, errors come with HTTP 500/404.
    V1,
    /// Ethereum: `{"jsonrpc":"2.0",...}`.
    V2,
}

/// Why a node rejected a transaction we asked it to broadcast.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BroadcastError {
    #[error("fee too low: {0}")]
    FeeTooLow(String),
    #[error("transaction is already in the chain: {0}")]
    AlreadyInChain(String),
    #[error("transaction is already in the node's mempool: {0}")]
    AlreadyInMempool(String),
    #[error("transaction conflicts with a mempool transaction: {0}")]
    MempoolConflict(String),
    #[error("transaction script failed verification: {0}")]
    InvalidScript(String),
    #[error("transaction is non-standard: {0}")]
    NonStandard(String),
    #[error("transaction inputs are missing or already spent: {0}")]
    MissingInputs(String),
    #[error("nonce too low (already used): {0}")]
    NonceTooLow(String),
    #[error("sender cannot pay for the transaction: {0}")]
    InsufficientFunds(String),
    #[error("transaction bytes could not be decoded: {0}")]
    Malformed(String),
    #[error("no node configured for network {0}")]
    NoNode(String),
    #[error("node unavailable, the transaction may or may not have been broadcast: {0}")]
    Unavailable(String),
    #[error("node rejected the transaction with code {0}: {1}")]
    Other(i64, String),
}

impl BroadcastError {
    /// `true` when the transaction is already known to the node (in the
    /// mempool or in the chain): a rebroadcast after a crash, not a failure.
    pub fn is_already_known(&self) -> bool {
        matches!(
            self,
            BroadcastError::AlreadyInChain(_) | BroadcastError::AlreadyInMempool(_)
        )
    }

    /// Classifies a Bitcoin Core `sendrawtransaction` error by its code
    /// (-22 decode, -25 verify, -26 rejected, -27 already in chain) and reject
    /// string.
    pub fn from_bitcoin(code: i64, message: &str) -> BroadcastError {
        let m = message.to_ascii_lowercase();
        let msg = message.to_owned();
        if code == -27
            || m.contains("already in block chain")
            || m.contains("already in utxo set")
            || m.contains("outputs already in")
        {
            BroadcastError::AlreadyInChain(msg)
        } else if m.contains("txn-already-in-mempool") || m.contains("txn-already-known") {
            BroadcastError::AlreadyInMempool(msg)
        } else if code == -22 || m.contains("decode failed") {
            BroadcastError::Malformed(msg)
        } else if m.contains("missingorspent")
            || m.contains("missing inputs")
            || m.contains("missing-inputs")
        {
            BroadcastError::MissingInputs(msg)
        } else if m.contains("txn-mempool-conflict") {
            BroadcastError::MempoolConflict(msg)
        } else if m.contains("min relay fee not met")
            || m.contains("mempool min fee not met")
            || m.contains("insufficient fee")
            || m.contains("min fee not met")
            || m.contains("fee too low")
        {
            BroadcastError::FeeTooLow(msg)
        } else if m.contains("script-verify-flag") || m.contains("mandatory-script") {
            BroadcastError::InvalidScript(msg)
        } else if code == -26
            && [
                "scriptpubkey",
                "dust",
                "tx-size",
                "version",
                "bare-multisig",
                "multi-op-return",
                "scriptsig-not-pushonly",
                "scriptsig-size",
                "non-final",
                "non-bip68-final",
                "bad-txns-nonstandard-inputs",
                "bad-witness-nonstandard",
                "too-long-mempool-chain",
            ]
            .iter()
            .any(|r| m.starts_with(r) || m.contains(&format!("{r},")) || m == *r)
        {
            BroadcastError::NonStandard(msg)
        } else if code == -25 {
            BroadcastError::MissingInputs(msg)
        } else {
            BroadcastError::Other(code, msg)
        }
    }

    /// Classifies an Ethereum node's `eth_sendRawTransaction` error message
    /// (geth, reth, anvil and the simulated node spell them alike).
    pub fn from_ethereum(code: i64, message: &str) -> BroadcastError {
        let m = message.to_ascii_lowercase();
        let msg = message.to_owned();
        if m.contains("already known") || m.contains("already imported") {
            BroadcastError::AlreadyInMempool(msg)
        } else if m.contains("nonce too low") {
            BroadcastError::NonceTooLow(msg)
        } else if m.contains("underpriced")
            || m.contains("fee cap less than block base fee")
            || m.contains("max fee per gas less than block base fee")
            || m.contains("fee too low")
        {
            BroadcastError::FeeTooLow(msg)
        } else if m.contains("insufficient funds") {
            BroadcastError::InsufficientFunds(msg)
        } else if m.contains("rlp") || m.contains("decode") || m.contains("invalid sender") {
            BroadcastError::Malformed(msg)
        } else {
            BroadcastError::Other(code, msg)
        }
    }
}

/// A failed call to a node.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("cannot reach node {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("node {url} refused the credentials (HTTP 401)")]
    Unauthorized { url: String },
    #[error("node {url} answered HTTP {status} to {method}: {body}")]
    Http {
        url: String,
        method: String,
        status: u16,
        body: String,
    },
    #[error("node answered {method} with a reply we cannot read: {reason}")]
    Decode { method: String, reason: String },
    #[error("node returned error {code} for {method}: {message}")]
    Node {
        method: String,
        code: i64,
        message: String,
    },
    #[error("broadcast rejected: {0}")]
    Broadcast(#[from] BroadcastError),
}

impl RpcError {
    /// The node's error code, when the node answered with one.
    pub fn node_code(&self) -> Option<i64> {
        match self {
            RpcError::Node { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// `true` when the node could not be reached or answered garbage (worth
    /// retrying, possibly on another node), as opposed to a definite answer.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RpcError::Transport { .. } | RpcError::Http { .. } | RpcError::Decode { .. }
        )
    }

    fn decode(method: &str, reason: impl ToString) -> RpcError {
        RpcError::Decode {
            method: method.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// A JSON-RPC endpoint: URL, optional basic auth, request ids.
#[derive(Debug)]
pub(crate) struct Transport {
    client: reqwest::Client,
    url: String,
    auth: Option<(String, String)>,
    dialect: Dialect,
    next_id: AtomicU64,
}

impl Transport {
    pub(crate) fn new(
        url: &str,
        auth: Option<(String, String)>,
        dialect: Dialect,
        timeout: Duration,
    ) -> Result<Self, RpcError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| RpcError::Transport {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Transport {
            client,
            url: url.to_owned(),
            auth,
            dialect,
            next_id: AtomicU64::new(1),
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    fn request_body(&self, method: &str, params: &Value, id: u64) -> Value {
        match self.dialect {
            Dialect::V1 => json!({"jsonrpc": "1.0", "id": id, "method": method, "params": params}),
            Dialect::V2 => json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        }
    }

    async fn post(&self, method: &str, body: &Value) -> Result<Value, RpcError> {
        let mut req = self.client.post(&self.url).json(body);
        if let Some((user, password)) = &self.auth {
            req = req.basic_auth(user, Some(password));
        }
        let resp = req.send().await.map_err(|e| RpcError::Transport {
            url: self.url.clone(),
            reason: e.to_string(),
        })?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(RpcError::Unauthorized {
                url: self.url.clone(),
            });
        }
        let bytes = resp.bytes().await.map_err(|e| RpcError::Transport {
            url: self.url.clone(),
            reason: e.to_string(),
        })?;
        // Bitcoin Core answers errors with HTTP 500/404 and a JSON body; read
        // the body whenever it is JSON.
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => Ok(v),
            Err(_) => Err(RpcError::Http {
                url: self.url.clone(),
                method: method.to_owned(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            }),
        }
    }

    fn unwrap_reply<T: DeserializeOwned>(method: &str, mut reply: Value) -> Result<T, RpcError> {
        let error = reply
            .get_mut("error")
            .map(Value::take)
            .unwrap_or(Value::Null);
        if !error.is_null() {
            let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| error.to_string());
            return Err(RpcError::Node {
                method: method.to_owned(),
                code,
                message,
            });
        }
        let result = reply
            .get_mut("result")
            .map(Value::take)
            .unwrap_or(Value::Null);
        serde_json::from_value(result).map_err(|e| RpcError::decode(method, e))
    }

    /// Calls `method` with positional `params`.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = self.request_body(method, &params, id);
        let reply = self.post(method, &body).await?;
        Self::unwrap_reply(method, reply)
    }

    /// Calls `method` once per parameter list in one HTTP request; results
    /// come back in the order of `params`.
    pub(crate) async fn batch<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Vec<Value>,
    ) -> Result<Vec<Result<T, RpcError>>, RpcError> {
        if params.is_empty() {
            return Ok(Vec::new());
        }
        let first = self
            .next_id
            .fetch_add(params.len() as u64, Ordering::Relaxed);
        let body = Value::Array(
            params
                .iter()
                .enumerate()
                .map(|(i, p)| self.request_body(method, p, first + i as u64))
                .collect(),
        );
        let reply = self.post(method, &body).await?;
        let Value::Array(items) = reply else {
            // A node without batch support answers with one error object.
            return Err(match Self::unwrap_reply::<Value>(method, reply) {
                Err(e) => e,
                Ok(_) => RpcError::decode(method, "batch reply is not an array"),
            });
        };
        let mut out: Vec<Option<Result<T, RpcError>>> = (0..params.len()).map(|_| None).collect();
        for item in items {
            let Some(idx) = item
                .get("id")
                .and_then(Value::as_u64)
                .and_then(|id| id.checked_sub(first))
                .map(|i| i as usize)
                .filter(|i| *i < params.len())
            else {
                continue;
            };
            out[idx] = Some(Self::unwrap_reply(method, item));
        }
        Ok(out
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(RpcError::decode(method, "batch reply is missing an answer"))
                })
            })
            .collect())
    }
}
