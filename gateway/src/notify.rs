//! Notifications of swap status changes, fed from `swap-events`: signed
//! webhooks to the partner that opened the swap (persisted delivery log,
//! retries with exponential backoff), and a [`Notifier`] for push, email
//! and SMS (embedded mode: [`LogNotifier`]). docs/webhooks.md says how a
//! receiver verifies a delivery.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use proto::api::SwapView;
use proto::event::{topics, Envelope, SwapStatusChanged};
use serde::Serialize;
use sha2::Sha256;
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::partners::{Partner, Partners};

/// The header carrying `sha256=<hex HMAC-SHA256(webhook secret, exact body)>`.
pub const SIGNATURE_HEADER: &str = "x-swap-signature";
/// The header carrying the delivery id (the same on every retry).
pub const DELIVERY_HEADER: &str = "x-swap-delivery";
/// The bus consumer group every gateway instance shares for notifications,
/// so that each status change is taken up once.
pub const NOTIFIER_GROUP: &str = "gateway-notifier";

/// The HMAC-SHA256 signature header value of a webhook body.
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature header against a body, in constant time; what a
/// receiver does.
pub fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// How webhooks are retried.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Wait after the first failed attempt; doubles with each failure.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// After this many failed attempts the delivery is `failed` for good.
    pub max_attempts: u32,
    /// Per-attempt HTTP timeout.
    pub timeout: Duration,
    /// How often due deliveries are looked for.
    pub poll_interval: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(3600),
            max_attempts: 15,
            timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// The wait before attempt `failures + 1`: `initial · 2^(failures-1)`,
/// capped. Pure.
pub fn backoff(cfg: &WebhookConfig, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    cfg.initial_backoff
        .saturating_mul(1u32 << exp)
        .min(cfg.max_backoff)
}

/// The JSON body of a webhook: the event's id (deduplicate on it), kind,
/// time, and the swap as it stands after the change.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookBody {
    pub event_id: String,
    /// `swap.status`.
    pub kind: String,
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: proto::Timestamp,
    /// The swap's version after the change.
    pub version: u64,
    pub swap: SwapView,
}

/// A status change to tell a user about.
#[derive(Debug, Clone)]
pub struct Notification {
    pub event_id: String,
    pub swap: SwapView,
    /// The partner that opened the swap, if any.
    pub partner_id: Option<String>,
}

/// Push, email or SMS. An implementation finds the user's device token or
/// address from its own records of the swap and sends; it must be
/// idempotent on `event_id` (the same change can be handed over again after
/// a restart).
#[async_trait::async_trait]
pub trait Notifier: Send + Sync + 'static {
    async fn notify(&self, notification: &Notification) -> Result<(), String>;
}

/// Embedded mode's notifier: writes each notification to the log.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogNotifier;

#[async_trait::async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, n: &Notification) -> Result<(), String> {
        info!(
            swap_id = %n.swap.swap_id,
            status = ?n.swap.status,
            event_id = %n.event_id,
            partner_id = n.partner_id.as_deref().unwrap_or("-"),
            "notify.swap_status"
        );
        Ok(())
    }
}

/// One delivery as the partner's delivery log shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub delivery_id: String,
    pub event_id: String,
    pub swap_id: String,
    pub url: String,
    /// `pending`, `delivered` or `failed` (gave up after the last retry).
    pub status: String,
    pub attempts: u32,
    /// Milliseconds since the epoch of the next try, while pending.
    pub next_attempt_at_ms: Option<i64>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
}

/// Starts the two notification tasks: intake from `swap-events` (notifier
/// and delivery rows) and the webhook sender.
pub(crate) async fn start(
    partners: Arc<Partners>,
    notifier: Arc<dyn Notifier>,
    bus: infra::bus::SharedBus,
    cfg: WebhookConfig,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), crate::GatewayError> {
    let sub = bus
        .subscribe(topics::SWAP_EVENTS, NOTIFIER_GROUP)
        .await
        .map_err(|e| crate::GatewayError::Bus(e.to_string()))?;
    let p = partners.clone();
    let stop = shutdown.clone();
    tracker.spawn(async move { intake(sub, p, notifier, stop).await });
    let client = reqwest::Client::builder()
        .timeout(cfg.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| crate::GatewayError::Bus(format!("webhook client: {e}")))?;
    tracker.spawn(async move { deliver_loop(partners, client, cfg, shutdown).await });
    Ok(())
}

async fn intake(
    mut sub: Box<dyn infra::bus::Subscription>,
    partners: Arc<Partners>,
    notifier: Arc<dyn Notifier>,
    shutdown: CancellationToken,
) {
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => return,
            d = sub.next() => d,
        };
        let delivery = match delivery {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "notifications: swap-events next failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let env = match serde_json::from_slice::<Envelope<SwapStatusChanged>>(
            &delivery.message.payload,
        ) {
            Ok(env) => env,
            Err(e) => {
                warn!(error = %e, "notifications: unreadable swap event skipped");
                let _ = sub.commit(&delivery).await;
                continue;
            }
        };
        // Retry the same event until its effects are recorded: nothing is
        // committed on the bus before the delivery row exists.
        loop {
            match take_up(&partners, notifier.as_ref(), &env).await {
                Ok(()) => break,
                Err(e) => {
                    warn!(error = %e, event_id = %env.id, "notifications: retrying an event");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        if let Err(e) = sub.commit(&delivery).await {
            warn!(error = %e, "notifications: swap-events commit failed");
        }
    }
}

async fn take_up(
    partners: &Partners,
    notifier: &dyn Notifier,
    env: &Envelope<SwapStatusChanged>,
) -> Result<(), String> {
    let swap_id = env.payload.swap.swap_id.to_string();
    let partner = partners
        .partner_of_swap(&swap_id)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(p) = &partner {
        enqueue(partners, p, env).await?;
    }
    notifier
        .notify(&Notification {
            event_id: env.id.to_string(),
            swap: env.payload.swap.clone(),
            partner_id: partner.map(|p| p.partner_id),
        })
        .await
}

/// Writes the delivery row (once per partner and event).
async fn enqueue(
    partners: &Partners,
    partner: &Partner,
    env: &Envelope<SwapStatusChanged>,
) -> Result<(), String> {
    let Some(hook) = &partner.webhook else {
        return Ok(());
    };
    let body = WebhookBody {
        event_id: env.id.to_string(),
        kind: env.kind.clone(),
        occurred_at: env.occurred_at,
        version: env.payload.version,
        swap: env.payload.swap.clone(),
    };
    let body = serde_json::to_string(&body).map_err(|e| e.to_string())?;
    let delivery_id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("webhook:{}:{}", partner.partner_id, env.id).as_bytes(),
    )
    .to_string();
    let now = infra::db::now_ms();
    sqlx::query(
        "INSERT INTO gw_webhook_deliveries (delivery_id, partner_id, event_id, swap_id, url, body, \
         status, attempts, next_attempt_at_ms, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7, $7) \
         ON CONFLICT (partner_id, event_id) DO NOTHING",
    )
    .bind(&delivery_id)
    .bind(&partner.partner_id)
    .bind(env.id.to_string())
    .bind(env.payload.swap.swap_id.to_string())
    .bind(&hook.url)
    .bind(&body)
    .bind(now)
    .execute(partners.db().pool())
    .await
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// A due delivery, claimed by this instance.
struct Due {
    delivery_id: String,
    partner_id: String,
    url: String,
    body: String,
    attempts: u32,
}

/// How long a claimed delivery is hidden from other instances while it is
/// being sent.
fn claim_lease(cfg: &WebhookConfig) -> i64 {
    i64::try_from((cfg.timeout * 2).as_millis()).unwrap_or(i64::MAX)
}

async fn deliver_loop(
    partners: Arc<Partners>,
    client: reqwest::Client,
    cfg: WebhookConfig,
    shutdown: CancellationToken,
) {
    loop {
        match deliver_due(&partners, &client, &cfg).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => warn!(error = %e, "webhooks: delivery pass failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(cfg.poll_interval) => {}
        }
    }
}

/// Sends every due delivery once; returns how many were tried.
async fn deliver_due(
    partners: &Partners,
    client: &reqwest::Client,
    cfg: &WebhookConfig,
) -> Result<usize, sqlx::Error> {
    let pool = partners.db().pool();
    let now = infra::db::now_ms();
    let rows = sqlx::query(
        "SELECT delivery_id, partner_id, url, body, attempts, next_attempt_at_ms \
         FROM gw_webhook_deliveries WHERE status = 'pending' AND next_attempt_at_ms <= $1 \
         ORDER BY next_attempt_at_ms LIMIT 32",
    )
    .bind(now)
    .fetch_all(pool)
    .await?;
    let mut tried = 0;
    for r in rows {
        let delivery_id: String = r.try_get(0)?;
        let seen_next: i64 = r.try_get(5)?;
        // Claim: only the instance that moves next_attempt_at_ms sends.
        let claimed = sqlx::query(
            "UPDATE gw_webhook_deliveries SET next_attempt_at_ms = $1 \
             WHERE delivery_id = $2 AND status = 'pending' AND next_attempt_at_ms = $3",
        )
        .bind(now.saturating_add(claim_lease(cfg)))
        .bind(&delivery_id)
        .bind(seen_next)
        .execute(pool)
        .await?;
        if claimed.rows_affected() != 1 {
            continue;
        }
        let attempts: i64 = r.try_get(4)?;
        let due = Due {
            delivery_id,
            partner_id: r.try_get(1)?,
            url: r.try_get(2)?,
            body: r.try_get(3)?,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        };
        attempt(partners, client, cfg, due).await?;
        tried += 1;
    }
    Ok(tried)
}

async fn attempt(
    partners: &Partners,
    client: &reqwest::Client,
    cfg: &WebhookConfig,
    due: Due,
) -> Result<(), sqlx::Error> {
    let pool = partners.db().pool();
    // The secret as it is now: a rotated secret signs the retries.
    let secret = match partners.get(&due.partner_id).await {
        Ok(Some(Partner {
            webhook: Some(w), ..
        })) => Some(w.secret),
        _ => None,
    };
    let number = due.attempts + 1;
    let started = Instant::now();
    let outcome: Result<u16, String> = match &secret {
        None => Err("the partner has no webhook any more".into()),
        Some(secret) => client
            .post(&due.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign(secret, due.body.as_bytes()))
            .header(DELIVERY_HEADER, &due.delivery_id)
            .body(due.body.clone())
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string()),
    };
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let now = infra::db::now_ms();
    let (code, error) = match &outcome {
        Ok(c) if (200..300).contains(c) => (Some(*c), None),
        Ok(c) => (Some(*c), Some(format!("HTTP {c}"))),
        Err(e) => (None, Some(e.clone())),
    };
    let delivered = error.is_none();
    let (status, next) = if delivered {
        ("delivered", now)
    } else if number >= cfg.max_attempts || secret.is_none() {
        ("failed", now)
    } else {
        let wait = i64::try_from(backoff(cfg, number).as_millis()).unwrap_or(i64::MAX);
        ("pending", now.saturating_add(wait))
    };
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO gw_webhook_attempts (delivery_id, attempt, at_ms, status_code, error, duration_ms) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (delivery_id, attempt) DO NOTHING",
    )
    .bind(&due.delivery_id)
    .bind(i64::from(number))
    .bind(now)
    .bind(code.map(i64::from))
    .bind(error.clone())
    .bind(duration_ms)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE gw_webhook_deliveries SET status = $1, attempts = $2, next_attempt_at_ms = $3, \
         last_status_code = $4, last_error = $5, updated_at_ms = $6 WHERE delivery_id = $7",
    )
    .bind(status)
    .bind(i64::from(number))
    .bind(next)
    .bind(code.map(i64::from))
    .bind(error.clone())
    .bind(now)
    .bind(&due.delivery_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if delivered {
        info!(delivery_id = %due.delivery_id, attempt = number, "webhook.delivered");
    } else {
        warn!(delivery_id = %due.delivery_id, attempt = number, status, error = error.as_deref().unwrap_or(""), "webhook.attempt_failed");
    }
    Ok(())
}

/// A partner's most recent deliveries, newest first.
pub async fn deliveries(
    partners: &Partners,
    partner_id: &str,
    limit: u32,
) -> Result<Vec<DeliveryView>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT delivery_id, event_id, swap_id, url, status, attempts, next_attempt_at_ms, \
         last_status_code, last_error, created_at_ms FROM gw_webhook_deliveries \
         WHERE partner_id = $1 ORDER BY created_at_ms DESC, delivery_id LIMIT $2",
    )
    .bind(partner_id)
    .bind(i64::from(limit))
    .fetch_all(partners.db().pool())
    .await?;
    rows.iter()
        .map(|r| {
            let status: String = r.try_get(4)?;
            let attempts: i64 = r.try_get(5)?;
            let next: i64 = r.try_get(6)?;
            let code: Option<i64> = r.try_get(7)?;
            Ok(DeliveryView {
                delivery_id: r.try_get(0)?,
                event_id: r.try_get(1)?,
                swap_id: r.try_get(2)?,
                url: r.try_get(3)?,
                next_attempt_at_ms: (status == "pending").then_some(next),
                status,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                last_status_code: code.and_then(|c| u16::try_from(c).ok()),
                last_error: r.try_get(8)?,
                created_at_ms: r.try_get(9)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_the_exact_body() {
        // RFC 4231 test case 2.
        let sig = sign("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify("Jefe", b"what do ya want for nothing?", &sig));
        assert!(!verify("Jefe", b"what do ya want for nothing?!", &sig));
        assert!(!verify("jefe", b"what do ya want for nothing?", &sig));
        assert!(!verify("Jefe", b"x", "sha256=zz"));
        assert!(!verify("Jefe", b"x", "md5=00"));
    }

    #[test]
    fn the_example_in_docs_webhooks_md_verifies() {
        let doc = include_str!("../../docs/webhooks.md");
        let secret = "whsec_5f1c0e3a9d7b42c68e1f0a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f";
        let body = doc
            .lines()
            .find(|l| l.starts_with("{\"event_id\""))
            .expect("example body");
        let header = doc
            .lines()
            .find_map(|l| l.strip_prefix("X-Swap-Signature: "))
            .expect("example header");
        assert!(verify(secret, body.as_bytes(), header));
        assert_eq!(sign(secret, body.as_bytes()), header);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let cfg = WebhookConfig {
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(60),
            ..WebhookConfig::default()
        };
        let waits: Vec<u64> = (1..=6).map(|n| backoff(&cfg, n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
        assert_eq!(backoff(&cfg, 1000), Duration::from_secs(60));
    }
}
