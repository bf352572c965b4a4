//! Partner apps: API keys (stored as SHA-256 only), each partner's fee on
//! its quotes, its webhook, and which swaps it opened. The gateway's own
//! tables (`gw_*`, migrations 6000s).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use infra::db::{Db, Migrations};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

pub(crate) static MIGRATIONS: Migrations = Migrations {
    postgres: || sqlx::migrate!("migrations/postgres"),
    sqlite: || sqlx::migrate!("migrations/sqlite"),
};

/// The request header that carries a partner's API key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// The highest fee a partner may add to its quotes, in basis points.
pub const MAX_PARTNER_FEE_BPS: u32 = 500;
/// How long an API key lookup is trusted before the database is asked again
/// (so a deactivated key stops working on every instance within this time).
const KEY_CACHE_TTL: Duration = Duration::from_secs(10);
const KEY_CACHE_MAX: usize = 10_000;

/// A partner app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partner {
    pub partner_id: String,
    pub name: String,
    /// Added to every quote the partner asks for, in basis points of the
    /// amount out; shown in the quote as `partner_fee`.
    pub fee_bps: u32,
    pub webhook: Option<Webhook>,
    pub active: bool,
}

/// Where a partner's swap notifications are posted, and the secret they are
/// signed with.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// A partner to register.
#[derive(Debug, Clone)]
pub struct NewPartner {
    pub name: String,
    pub fee_bps: u32,
    /// `http://` or `https://`.
    pub webhook_url: Option<String>,
}

/// A registered partner with its API key and webhook secret: shown once,
/// never stored in the clear (the key) or shown again.
#[derive(Clone)]
pub struct CreatedPartner {
    pub partner: Partner,
    pub api_key: String,
}

impl std::fmt::Debug for CreatedPartner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedPartner")
            .field("partner", &self.partner)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PartnerError {
    #[error("invalid partner: {0}")]
    Invalid(String),
    #[error("no partner {0}")]
    NotFound(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] infra::db::DbError),
}

/// The SHA-256 of an API key, hex: what the database keeps.
pub fn api_key_hash(api_key: &str) -> String {
    hex::encode(Sha256::digest(api_key.as_bytes()))
}

fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// Partner records over the gateway's tables.
#[derive(Debug)]
pub struct Partners {
    db: Db,
    cache: Mutex<HashMap<String, (Instant, Option<Partner>)>>,
}

impl Partners {
    /// Applies the gateway's migrations.
    pub async fn open(db: Db) -> Result<Self, PartnerError> {
        db.migrate(&MIGRATIONS).await?;
        Ok(Partners {
            db,
            cache: Mutex::default(),
        })
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Registers a partner; returns its API key (and webhook secret) once.
    pub async fn create(&self, new: NewPartner) -> Result<CreatedPartner, PartnerError> {
        let name = new.name.trim();
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err(PartnerError::Invalid(
                "name must be 1 to 100 printable characters".into(),
            ));
        }
        if new.fee_bps > MAX_PARTNER_FEE_BPS {
            return Err(PartnerError::Invalid(format!(
                "fee_bps {} is above the maximum of {MAX_PARTNER_FEE_BPS}",
                new.fee_bps
            )));
        }
        let webhook = match new.webhook_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(url) => {
                let parsed = reqwest::Url::parse(url)
                    .map_err(|e| PartnerError::Invalid(format!("webhook_url: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                    return Err(PartnerError::Invalid(
                        "webhook_url must be an http:// or https:// URL".into(),
                    ));
                }
                Some(Webhook {
                    url: url.to_owned(),
                    secret: random_token("whsec_"),
                })
            }
        };
        let partner = Partner {
            partner_id: uuid::Uuid::now_v7().to_string(),
            name: name.to_owned(),
            fee_bps: new.fee_bps,
            webhook,
            active: true,
        };
        let api_key = random_token("swk_");
        sqlx::query(
            "INSERT INTO gw_partners (partner_id, name, api_key_sha256, fee_bps, webhook_url, \
             webhook_secret, active, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, 1, $7)",
        )
        .bind(&partner.partner_id)
        .bind(&partner.name)
        .bind(api_key_hash(&api_key))
        .bind(i64::from(partner.fee_bps))
        .bind(partner.webhook.as_ref().map(|w| w.url.clone()))
        .bind(partner.webhook.as_ref().map(|w| w.secret.clone()))
        .bind(infra::db::now_ms())
        .execute(self.db.pool())
        .await?;
        Ok(CreatedPartner { partner, api_key })
    }

    /// Turns a partner's key off (or on again).
    pub async fn set_active(&self, partner_id: &str, active: bool) -> Result<(), PartnerError> {
        let done = sqlx::query("UPDATE gw_partners SET active = $1 WHERE partner_id = $2")
            .bind(i64::from(active))
            .bind(partner_id)
            .execute(self.db.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(PartnerError::NotFound(partner_id.to_owned()));
        }
        self.lock_cache().clear();
        Ok(())
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<Partner>)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The partner an API key belongs to (active or not), `None` for an
    /// unknown key.
    pub async fn by_api_key(&self, api_key: &str) -> Result<Option<Partner>, PartnerError> {
        let hash = api_key_hash(api_key);
        if let Some((at, p)) = self.lock_cache().get(&hash) {
            if at.elapsed() < KEY_CACHE_TTL {
                return Ok(p.clone());
            }
        }
        let row = sqlx::query(&format!("{SELECT_PARTNER} WHERE api_key_sha256 = $1"))
            .bind(&hash)
            .fetch_optional(self.db.pool())
            .await?;
        let partner = row.map(|r| partner_from_row(&r)).transpose()?;
        let mut cache = self.lock_cache();
        if cache.len() >= KEY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(hash, (Instant::now(), partner.clone()));
        Ok(partner)
    }

    pub async fn get(&self, partner_id: &str) -> Result<Option<Partner>, PartnerError> {
        let row = sqlx::query(&format!("{SELECT_PARTNER} WHERE partner_id = $1"))
            .bind(partner_id)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.map(|r| partner_from_row(&r)).transpose()?)
    }

    /// Records that `partner_id` opened `swap_id`; written before the swap
    /// is opened so that its first status change already finds its partner.
    pub async fn link_swap(&self, swap_id: &str, partner_id: &str) -> Result<(), PartnerError> {
        sqlx::query(
            "INSERT INTO gw_swap_partners (swap_id, partner_id, created_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (swap_id) DO NOTHING",
        )
        .bind(swap_id)
        .bind(partner_id)
        .bind(infra::db::now_ms())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The partner that opened a swap, if one did.
    pub async fn partner_of_swap(&self, swap_id: &str) -> Result<Option<Partner>, PartnerError> {
        let row = sqlx::query(
            "SELECT p.partner_id, p.name, p.fee_bps, p.webhook_url, p.webhook_secret, p.active \
             FROM gw_swap_partners s JOIN gw_partners p ON p.partner_id = s.partner_id \
             WHERE s.swap_id = $1",
        )
        .bind(swap_id)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.map(|r| partner_from_row(&r)).transpose()?)
    }
}

const SELECT_PARTNER: &str =
    "SELECT partner_id, name, fee_bps, webhook_url, webhook_secret, active FROM gw_partners";

fn partner_from_row(r: &sqlx::any::AnyRow) -> Result<Partner, sqlx::Error> {
    let fee: i64 = r.try_get(2)?;
    let url: Option<String> = r.try_get(3)?;
    let secret: Option<String> = r.try_get(4)?;
    let active: i64 = r.try_get(5)?;
    Ok(Partner {
        partner_id: r.try_get(0)?,
        name: r.try_get(1)?,
        fee_bps: u32::try_from(fee).map_err(|_| {
            sqlx::Error::Decode(format!("partner fee {fee} bps out of range").into())
        })?,
        webhook: match (url, secret) {
            (Some(url), Some(secret)) => Some(Webhook { url, secret }),
            _ => None,
        },
        active: active != 0,
    })
}
