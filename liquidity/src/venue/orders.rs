//! Placing hedge orders at a venue over authenticated REST: the
//! [`OrderVenue`] boundary the hedger sends through, and
//! [`RestOrderVenue`], the client of the simulated venue's `POST /orders`
//! (JSON: `cl_ord_id`, `symbol`, `side`, `order_qty`; answer: a fill
//! report). Requests are signed like Kraken's private REST calls, with
//! SHA-256 for the MAC: headers `API-Key`, `API-Nonce` and `API-Sign` =
//! base64(HMAC-SHA256(secret, nonce + body)).
//!
//! Every answer maps to a [`crate::hedge::Attempt`]: a fill report (full,
//! partial, none) is `Answered`; a refusal of the request itself (400,
//! 401, 403, 404, 422 without a report) is `Refused`; no answer (connect
//! error, timeout, 429, 5xx) is `NoAnswer`, which the hedger retries with
//! the same client order id.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::hedge::{Attempt, HedgeOrder, VenueFill};

/// A venue that takes hedge orders.
#[async_trait]
pub trait OrderVenue: Send + Sync + fmt::Debug {
    fn name(&self) -> &str;
    /// Sends `order` once (with its client order id) and says what came of it.
    async fn place(&self, order: &HedgeOrder) -> Attempt;
}

/// An API key and its secret. `Debug` never shows the secret.
#[derive(Clone)]
pub struct ApiCredentials {
    pub api_key: String,
    secret: Vec<u8>,
}

impl fmt::Debug for ApiCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiCredentials")
            .field("api_key", &self.api_key)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl ApiCredentials {
    pub fn new(api_key: &str, secret: &[u8]) -> Self {
        ApiCredentials {
            api_key: api_key.to_owned(),
            secret: secret.to_vec(),
        }
    }

    /// `API-Sign` of a request with `nonce` and `body`.
    pub fn sign(&self, nonce: &str, body: &[u8]) -> String {
        STANDARD.encode(sign_raw(&self.secret, nonce, body))
    }

    /// Whether `signature` is this key's signature of `nonce` and `body`
    /// (constant time).
    pub fn verify(&self, nonce: &str, body: &[u8], signature: &str) -> bool {
        let Ok(sig) = STANDARD.decode(signature) else {
            return false;
        };
        let mut mac = mac(&self.secret);
        mac.update(nonce.as_bytes());
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    }
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

fn sign_raw(secret: &[u8], nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = mac(secret);
    m.update(nonce.as_bytes());
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// The order as `POST /orders` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    /// The client's id: the same id gets the same answer, never a second fill.
    pub cl_ord_id: String,
    /// `BTC/USD`.
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: String,
    /// Base-asset quantity, an exact decimal string.
    #[serde(with = "rust_decimal::serde::str")]
    pub order_qty: Decimal,
}

/// What happened to an order, as `POST /orders` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderReport {
    pub order_id: String,
    pub cl_ord_id: String,
    /// `filled`, `partially_filled` or `rejected`.
    pub status: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub filled_qty: Decimal,
    /// Volume-weighted price of the fill; absent when nothing filled.
    #[serde(with = "rust_decimal::serde::str_option")]
    pub avg_price: Option<Decimal>,
    pub reason: Option<String>,
}

impl OrderRequest {
    pub fn for_order(o: &HedgeOrder) -> Self {
        OrderRequest {
            cl_ord_id: o.client_order_id.clone(),
            symbol: o.market.to_string(),
            side: o.side.as_str().to_owned(),
            order_qty: o.qty,
        }
    }
}

/// Client of a venue's `POST /orders`.
#[derive(Debug, Clone)]
pub struct RestOrderVenue {
    name: String,
    url: String,
    creds: ApiCredentials,
    http: reqwest::Client,
}

impl RestOrderVenue {
    /// `url`: the order endpoint (e.g. `http://127.0.0.1:9000/orders`);
    /// `timeout`: how long one attempt waits for an answer.
    pub fn new(
        name: &str,
        url: &str,
        creds: ApiCredentials,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(RestOrderVenue {
            name: name.to_owned(),
            url: url.to_owned(),
            creds,
            http: reqwest::Client::builder().timeout(timeout).build()?,
        })
    }
}

/// A nonce that increases per key: the time in microseconds.
fn nonce() -> String {
    chrono::Utc::now().timestamp_micros().to_string()
}

#[async_trait]
impl OrderVenue for RestOrderVenue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn place(&self, order: &HedgeOrder) -> Attempt {
        let body = match serde_json::to_vec(&OrderRequest::for_order(order)) {
            Ok(b) => b,
            Err(e) => return Attempt::Refused(format!("order does not serialise: {e}")),
        };
        let nonce = nonce();
        let sign = self.creds.sign(&nonce, &body);
        let sent = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("API-Key", &self.creds.api_key)
            .header("API-Nonce", &nonce)
            .header("API-Sign", sign)
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return Attempt::NoAnswer(format!("no answer from {}: {e}", self.name)),
        };
        let status = resp.status();
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => return Attempt::NoAnswer(format!("answer from {} cut off: {e}", self.name)),
        };
        if status.is_server_error() || status.as_u16() == 429 {
            return Attempt::NoAnswer(format!("{} answered {status}: {text}", self.name));
        }
        match serde_json::from_str::<OrderReport>(&text) {
            Ok(report) if report.cl_ord_id == order.client_order_id => {
                Attempt::Answered(VenueFill {
                    venue_order_id: report.order_id,
                    filled_qty: report.filled_qty,
                    avg_price: report.avg_price,
                    reason: report.reason,
                })
            }
            // The venue spoke of another order: nothing known of ours.
            Ok(report) => Attempt::NoAnswer(format!(
                "{} answered for order {}, not {}",
                self.name, report.cl_ord_id, order.client_order_id
            )),
            Err(_) if status.is_client_error() => Attempt::Refused(format!(
                "{} refused the order ({status}): {text}",
                self.name
            )),
            Err(e) => Attempt::NoAnswer(format!(
                "{} answered {status} with no report ({e}): {text}",
                self.name
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_depend_on_nonce_body_and_secret() {
        let c = ApiCredentials::new("key", b"secret");
        let s = c.sign("1", b"{}");
        assert!(c.verify("1", b"{}", &s));
        assert!(!c.verify("2", b"{}", &s));
        assert!(!c.verify("1", b"{ }", &s));
        assert!(!ApiCredentials::new("key", b"other").verify("1", b"{}", &s));
        assert!(!c.verify("1", b"{}", "not base64!"));
        // RFC 4231 test case 2 (key "Jefe"), split as nonce + body.
        assert_eq!(
            hex::encode(sign_raw(b"Jefe", "what do ya want ", b"for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("115, 101") && shown.contains("redacted"),
            "{shown}"
        );
    }
}
