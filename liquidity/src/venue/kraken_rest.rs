//! Kraken Spot REST private requests, as the hedging side will send them:
//! the `AddOrder` form body with a client order id (`cl_ord_id`, so that a
//! retried order is never placed twice), and its authentication headers —
//! `API-Key`, and `API-Sign` = base64(HMAC-SHA512(base64-decoded secret,
//! URI path + SHA256(nonce + POST data))). Pure: nothing here sends.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256, Sha512};

/// Kraken's REST base address.
pub const KRAKEN_REST_URL: &str = "https://api.kraken.com";

/// The path of `AddOrder`.
pub const ADD_ORDER_PATH: &str = "/0/private/AddOrder";

/// Credentials that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("the Kraken API secret is not valid base64")]
    SecretNotBase64,
    #[error("the Kraken API key is empty")]
    EmptyKey,
}

/// An API key and its decoded secret. `Debug` never shows the secret.
#[derive(Clone)]
pub struct KrakenCredentials {
    api_key: String,
    secret: Vec<u8>,
}

impl fmt::Debug for KrakenCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KrakenCredentials")
            .field("api_key", &self.api_key)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl KrakenCredentials {
    /// From the key and the secret as Kraken shows them (base64).
    pub fn new(api_key: &str, secret_base64: &str) -> Result<Self, CredentialsError> {
        if api_key.trim().is_empty() {
            return Err(CredentialsError::EmptyKey);
        }
        let secret = STANDARD
            .decode(secret_base64.trim())
            .map_err(|_| CredentialsError::SecretNotBase64)?;
        Ok(KrakenCredentials {
            api_key: api_key.to_owned(),
            secret,
        })
    }

    /// `API-Sign` for a request to `path` with form body `post_data`
    /// containing `nonce`.
    pub fn sign(&self, path: &str, nonce: &str, post_data: &str) -> String {
        let mut sha = Sha256::new();
        sha.update(nonce.as_bytes());
        sha.update(post_data.as_bytes());
        let digest = sha.finalize();
        // HMAC accepts keys of any length.
        let mut mac = match Hmac::<Sha512>::new_from_slice(&self.secret) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(path.as_bytes());
        mac.update(&digest);
        STANDARD.encode(mac.finalize().into_bytes())
    }
}

/// Buy or sell the pair's base asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderSide {
    Buy,
    Sell,
}

/// Market, or limit at a price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderType {
    Market,
    Limit { price: Decimal },
}

/// An `AddOrder` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddOrder {
    /// Kraken's pair name, e.g. `XBTUSD`.
    pub pair: String,
    pub side: OrderSide,
    pub order_type: OrderType,
    /// Base-asset volume.
    pub volume: Decimal,
    /// The client order id: the idempotency key of the hedge.
    pub cl_ord_id: Option<String>,
}

/// Percent-encodes a form value (unreserved characters kept).
fn form_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl AddOrder {
    /// The form body, fields in Kraken's documented order, nonce first.
    pub fn form(&self, nonce: u64) -> String {
        let mut fields: Vec<(&str, String)> = vec![("nonce", nonce.to_string())];
        let (ordertype, price) = match self.order_type {
            OrderType::Market => ("market", None),
            OrderType::Limit { price } => ("limit", Some(price)),
        };
        fields.push(("ordertype", ordertype.to_owned()));
        fields.push(("pair", self.pair.clone()));
        if let Some(p) = price {
            fields.push(("price", p.normalize().to_string()));
        }
        let side = match self.side {
            OrderSide::Buy => "buy",
            OrderSide::Sell => "sell",
        };
        fields.push(("type", side.to_owned()));
        fields.push(("volume", self.volume.normalize().to_string()));
        if let Some(id) = &self.cl_ord_id {
            fields.push(("cl_ord_id", id.clone()));
        }
        fields
            .iter()
            .map(|(k, v)| format!("{k}={}", form_value(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// A private request ready to send: POST `path` with `body`
/// (`application/x-www-form-urlencoded`) and these headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub path: &'static str,
    pub body: String,
    pub api_key: String,
    pub api_sign: String,
}

/// Signs `order` with `nonce` (strictly increasing per key).
pub fn add_order(creds: &KrakenCredentials, order: &AddOrder, nonce: u64) -> SignedRequest {
    let body = order.form(nonce);
    let api_sign = creds.sign(ADD_ORDER_PATH, &nonce.to_string(), &body);
    SignedRequest {
        path: ADD_ORDER_PATH,
        body,
        api_key: creds.api_key.clone(),
        api_sign,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Kraken's documented authentication example (Spot REST).
    const SECRET: &str =
        "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";
    const NONCE: u64 = 1_616_492_376_594;
    const BODY: &str =
        "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25";
    const SIGN: &str =
        "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ==";

    fn order(cl_ord_id: Option<&str>) -> AddOrder {
        AddOrder {
            pair: "XBTUSD".into(),
            side: OrderSide::Buy,
            order_type: OrderType::Limit {
                price: "37500".parse().unwrap(),
            },
            volume: "1.25".parse().unwrap(),
            cl_ord_id: cl_ord_id.map(str::to_owned),
        }
    }

    #[test]
    fn the_documented_signing_example_verifies() {
        let creds = KrakenCredentials::new("key", SECRET).unwrap();
        assert_eq!(creds.sign(ADD_ORDER_PATH, "1616492376594", BODY), SIGN);
        let req = add_order(&creds, &order(None), NONCE);
        assert_eq!(req.body, BODY);
        assert_eq!(req.api_sign, SIGN);
        assert_eq!(req.api_key, "key");
        // Any change to the body changes the signature.
        assert_ne!(
            creds.sign(
                ADD_ORDER_PATH,
                "1616492376594",
                &BODY.replace("1.25", "1.26")
            ),
            SIGN
        );
    }

    #[test]
    fn client_order_ids_are_in_the_signed_body() {
        let creds = KrakenCredentials::new("key", SECRET).unwrap();
        let id = "6d1b345e-2821-40e2-ad83-4ecb18a06876";
        let req = add_order(&creds, &order(Some(id)), NONCE);
        assert_eq!(req.body, format!("{BODY}&cl_ord_id={id}"));
        assert_eq!(
            req.api_sign,
            creds.sign(ADD_ORDER_PATH, &NONCE.to_string(), &req.body)
        );
        assert_eq!(form_value("a b&c=d"), "a%20b%26c%3Dd");
        let market = AddOrder {
            order_type: OrderType::Market,
            side: OrderSide::Sell,
            ..order(None)
        };
        assert_eq!(
            market.form(1),
            "nonce=1&ordertype=market&pair=XBTUSD&type=sell&volume=1.25"
        );
    }

    #[test]
    fn bad_credentials_are_refused_and_never_printed() {
        assert_eq!(
            KrakenCredentials::new("k", "not base64!").unwrap_err(),
            CredentialsError::SecretNotBase64
        );
        assert_eq!(
            KrakenCredentials::new(" ", SECRET).unwrap_err(),
            CredentialsError::EmptyKey
        );
        let shown = format!("{:?}", KrakenCredentials::new("k", SECRET).unwrap());
        assert!(
            !shown.contains("kQH5") && shown.contains("redacted"),
            "{shown}"
        );
    }
}
