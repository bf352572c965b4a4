//! The simulated users' view of the engine and the chains: the gateway's
//! REST API and the nodes' JSON-RPC, nothing else.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use proto::api::{ApiError, Quote, SwapView};
use serde_json::{json, Value};

/// One JSON-RPC endpoint (Bitcoin Core's 1.0 dialect or Ethereum's 2.0).
#[derive(Debug, Clone)]
pub struct Rpc {
    http: reqwest::Client,
    pub url: String,
    v2: bool,
}

/// A JSON-RPC error answer, kept apart from transport failures.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{method}: node answered error {code}: {message}")]
pub struct RpcRefusal {
    pub method: String,
    pub code: i64,
    pub message: String,
}

impl Rpc {
    pub fn bitcoin(http: reqwest::Client, url: String) -> Self {
        Rpc {
            http,
            url,
            v2: false,
        }
    }

    pub fn ethereum(http: reqwest::Client, url: String) -> Self {
        Rpc {
            http,
            url,
            v2: true,
        }
    }

    pub async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let body = if self.v2 {
            json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        } else {
            json!({"jsonrpc": "1.0", "id": "sim", "method": method, "params": params})
        };
        let resp: Value = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("{method}: cannot reach {}", self.url))?
            .json()
            .await
            .with_context(|| format!("{method}: unreadable answer"))?;
        if let Some(err) = resp.get("error").filter(|e| !e.is_null()) {
            return Err(RpcRefusal {
                method: method.to_owned(),
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            }
            .into());
        }
        Ok(resp.get("result").cloned().unwrap_or(Value::Null))
    }

    pub async fn call_str(&self, method: &str, params: Value) -> anyhow::Result<String> {
        let v = self.call(method, params).await?;
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("{method}: expected a string, got {v}"))
    }
}

/// What the gateway answered: a value, or a typed refusal.
pub type ApiResult<T> = Result<T, ApiError>;

/// The engine's public REST API.
#[derive(Debug, Clone)]
pub struct Gateway {
    http: reqwest::Client,
    pub base: String,
}

impl Gateway {
    pub fn new(http: reqwest::Client, url: &str) -> Self {
        Gateway {
            http,
            base: format!("{}/v1", url.trim_end_matches('/')),
        }
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<ApiResult<T>> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("{what}: gateway unreachable"))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .with_context(|| format!("{what}: no body"))?;
        if status.is_success() {
            return serde_json::from_str(&text)
                .map(Ok)
                .with_context(|| format!("{what}: unexpected answer {text}"));
        }
        match serde_json::from_str::<ApiError>(&text) {
            Ok(e) => Ok(Err(e)),
            Err(_) => bail!("{what}: gateway answered {status} without a typed error: {text}"),
        }
    }

    pub async fn rfq(
        &self,
        from: &str,
        to: &str,
        amount: &str,
    ) -> anyhow::Result<ApiResult<Quote>> {
        let body = json!({"from": from, "to": to, "amount": amount, "amount_side": "from"});
        self.send(
            self.http.post(format!("{}/quotes", self.base)).json(&body),
            "rfq",
        )
        .await
    }

    pub async fn accept(
        &self,
        quote: &Quote,
        payout_address: &str,
        refund_address: &str,
        idempotency_key: &str,
    ) -> anyhow::Result<ApiResult<SwapView>> {
        let body = json!({
            "quote_id": quote.quote_id.to_string(),
            "payout_address": payout_address,
            "refund_address": refund_address,
            "idempotency_key": idempotency_key,
        });
        self.send(
            self.http.post(format!("{}/swaps", self.base)).json(&body),
            "accept",
        )
        .await
    }

    pub async fn swap(&self, id: &str) -> anyhow::Result<ApiResult<SwapView>> {
        self.send(self.http.get(format!("{}/swaps/{id}", self.base)), "swap")
            .await
    }

    pub async fn psbt(&self, id: &str, body: &Value) -> anyhow::Result<ApiResult<Value>> {
        self.send(
            self.http
                .post(format!("{}/swaps/{id}/psbt", self.base))
                .json(body),
            "psbt",
        )
        .await
    }

    pub async fn relay(&self, id: &str, raw_tx: &str) -> anyhow::Result<ApiResult<Value>> {
        self.send(
            self.http
                .post(format!("{}/swaps/{id}/relay", self.base))
                .json(&json!({"raw_tx": raw_tx})),
            "relay",
        )
        .await
    }

    pub async fn pairs(&self) -> anyhow::Result<Vec<String>> {
        let v: ApiResult<Value> = self
            .send(self.http.get(format!("{}/pairs", self.base)), "pairs")
            .await?;
        let v = v.map_err(|e| anyhow!("pairs refused: {}", e.message))?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Waits until the gateway answers its health check.
    pub async fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<()> {
        let until = std::time::Instant::now() + timeout;
        loop {
            let ok = self
                .http
                .get(format!("{}/health", self.base))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            if std::time::Instant::now() > until {
                bail!(
                    "the engine at {} did not become healthy within {timeout:?}",
                    self.base
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `0x…` quantity to u128.
pub fn quantity(v: &Value) -> anyhow::Result<u128> {
    let s = v
        .as_str()
        .ok_or_else(|| anyhow!("expected a hex quantity, got {v}"))?;
    let hex = s
        .strip_prefix("0x")
        .ok_or_else(|| anyhow!("expected 0x-hex, got {s}"))?;
    u128::from_str_radix(hex, 16).with_context(|| format!("bad quantity {s}"))
}
