//! Firm quotes: built from a priced request, signed with HMAC-SHA256 over a
//! canonical string of their terms, and kept in memory until they expire.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use proto::api::Quote;
use proto::{AssetSpec, QuoteId, Timestamp};
use sha2::Sha256;

use crate::error::LiquidityError;
use crate::pricing::Priced;

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies quotes with the engine's secret key.
#[derive(Clone)]
pub struct QuoteSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for QuoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QuoteSigner { key: <redacted> }")
    }
}

impl QuoteSigner {
    /// A signer from the key's hex; at least 16 bytes.
    pub fn from_hex(key_hex: &str) -> Result<Self, LiquidityError> {
        let key = hex::decode(key_hex.trim()).map_err(|e| {
            LiquidityError::Config(format!("the quote signing key is not hex: {e}"))
        })?;
        if key.len() < 16 {
            return Err(LiquidityError::Config(format!(
                "the quote signing key has {} bytes; at least 16 are needed",
                key.len()
            )));
        }
        Ok(QuoteSigner { key })
    }

    /// The terms of a quote as the exact string that is signed: every field
    /// but the signature, one per line, timestamps in milliseconds.
    /// A partner fee, when there is one, is a last line.
    pub fn canonical(quote: &Quote) -> String {
        let mut terms = format!(
            "swap-quote-v1\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            quote.quote_id,
            quote.from,
            quote.to,
            quote.amount_in,
            quote.amount_in_base_units,
            quote.amount_out,
            quote.amount_out_base_units,
            quote.price,
            quote.network_fee,
            quote.created_at.timestamp_millis(),
            quote.expires_at.timestamp_millis(),
        );
        if let Some(fee) = &quote.partner_fee {
            terms.push_str("\npartner_fee:");
            terms.push_str(fee);
        }
        terms
    }

    fn mac(&self, quote: &Quote) -> HmacSha256 {
        // HMAC takes keys of any length.
        let mut mac = HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(Self::canonical(quote).as_bytes());
        mac
    }

    /// The signature (hex) of the quote's terms.
    pub fn sign(&self, quote: &Quote) -> String {
        hex::encode(self.mac(quote).finalize().into_bytes())
    }

    /// Checks the quote's signature against its terms (constant time).
    pub fn verify(&self, quote: &Quote) -> Result<(), LiquidityError> {
        let sig = hex::decode(&quote.signature)
            .map_err(|_| LiquidityError::BadSignature(quote.quote_id))?;
        self.mac(quote)
            .verify_slice(&sig)
            .map_err(|_| LiquidityError::BadSignature(quote.quote_id))
    }
}

/// Makes the signed quote of a priced request. Timestamps are cut to whole
/// milliseconds so that the quote survives storage that keeps no more.
pub fn build_quote(
    signer: &QuoteSigner,
    priced: &Priced,
    from: &AssetSpec,
    to: &AssetSpec,
    quote_id: QuoteId,
    now: Timestamp,
    ttl: chrono::Duration,
) -> Quote {
    let created_at = chrono::DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
    let mut quote = Quote {
        quote_id,
        from: from.id.clone(),
        to: to.id.clone(),
        amount_in: priced.amount_in.to_decimal_string(from.decimals),
        amount_in_base_units: priced.amount_in,
        amount_out: priced.amount_out.to_decimal_string(to.decimals),
        amount_out_base_units: priced.amount_out,
        price: priced.price,
        network_fee: priced.network_fee.to_decimal_string(to.decimals),
        partner_fee: priced
            .partner_fee
            .map(|fee| fee.to_decimal_string(to.decimals)),
        created_at,
        expires_at: created_at + ttl,
        signature: String::new(),
    };
    quote.signature = signer.sign(&quote);
    quote
}

/// Quotes in memory, by id.
#[derive(Debug, Default)]
pub struct QuoteStore {
    quotes: BTreeMap<QuoteId, Quote>,
}

impl QuoteStore {
    pub fn insert(&mut self, quote: Quote) {
        self.quotes.insert(quote.quote_id, quote);
    }

    pub fn get(&self, id: &QuoteId) -> Option<&Quote> {
        self.quotes.get(id)
    }

    pub fn len(&self) -> usize {
        self.quotes.len()
    }

    /// Every quote held, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Quote> {
        self.quotes.values()
    }

    pub fn is_empty(&self) -> bool {
        self.quotes.is_empty()
    }

    /// Drops quotes expired for longer than `retention`, except those
    /// `keep` says are still needed (locked ones).
    pub fn prune(
        &mut self,
        now: Timestamp,
        retention: chrono::Duration,
        keep: impl Fn(&QuoteId) -> bool,
    ) {
        self.quotes
            .retain(|id, q| keep(id) || now < q.expires_at + retention);
    }
}
