//! Who is calling and how fast: partner API keys (`X-Api-Key`), request
//! rates per client IP (anonymous) or per partner (GCRA, `governor`),
//! message rates per websocket connection, and CORS.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use proto::api::ErrorCode;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::Failure;
use crate::partners::{Partner, Partners, API_KEY_HEADER};

/// A rate: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Rate {
    fn quota(self) -> Quota {
        let per = NonZeroU32::new(self.per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(self.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Quota::per_second(per).allow_burst(burst)
    }
}

/// The gateway's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// HTTP requests (websocket upgrades included) without an API key, per
    /// client IP.
    pub anonymous_per_ip: Rate,
    /// HTTP requests with a partner's API key, per partner.
    pub per_partner: Rate,
    /// Messages a websocket client may send, per connection.
    pub ws_messages: Rate,
    /// Origins allowed to call from a browser: empty for none (no CORS
    /// headers), `*` for any.
    pub cors_origins: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            anonymous_per_ip: Rate {
                per_second: 50,
                burst: 200,
            },
            per_partner: Rate {
                per_second: 200,
                burst: 1000,
            },
            ws_messages: Rate {
                per_second: 20,
                burst: 100,
            },
            cors_origins: vec!["*".into()],
        }
    }
}

/// The request limiters, shared by all routes of one instance.
pub(crate) struct Limiters {
    anonymous: DefaultKeyedRateLimiter<IpAddr>,
    partners: DefaultKeyedRateLimiter<String>,
    ws_messages: Quota,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters").finish_non_exhaustive()
    }
}

/// Keys tracked before idle ones are dropped.
const MAX_TRACKED_KEYS: usize = 100_000;

impl Limiters {
    pub(crate) fn new(limits: &Limits) -> Self {
        Limiters {
            anonymous: RateLimiter::keyed(limits.anonymous_per_ip.quota()),
            partners: RateLimiter::keyed(limits.per_partner.quota()),
            ws_messages: limits.ws_messages.quota(),
        }
    }

    /// A fresh limiter for one websocket connection's messages.
    pub(crate) fn ws_connection(&self) -> DefaultDirectRateLimiter {
        RateLimiter::direct(self.ws_messages)
    }
}

/// The failure a limiter gives: 429 with the wait in `Retry-After`.
pub(crate) fn rate_limited(wait: Duration, what: &str) -> Failure {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Failure::new(
        ErrorCode::RateLimited,
        format!("too many {what}; retry in {secs} s"),
    )
    .retry_after(secs.max(1))
}

/// Checks one websocket message against the connection's limiter.
pub(crate) fn check_ws(limiter: &DefaultDirectRateLimiter) -> Result<(), Failure> {
    limiter.check().map_err(|not_until| {
        rate_limited(
            not_until.wait_time_from(DefaultClock::default().now()),
            "messages on this connection",
        )
    })
}

/// The partner authenticated for a request (in its extensions).
#[derive(Debug, Clone)]
pub struct Caller(pub Option<Partner>);

/// What the middleware needs.
#[derive(Clone, Debug)]
pub(crate) struct Gate {
    pub(crate) partners: Arc<Partners>,
    pub(crate) limiters: Arc<Limiters>,
}

/// Authenticates the API key if one is sent (401 unknown, 403 revoked),
/// then applies the partner's or the client IP's rate (429).
pub(crate) async fn gate(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    let key = match req.headers().get(API_KEY_HEADER).map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) => Some(k.to_owned()),
        Some(Err(_)) => {
            return Failure::new(
                ErrorCode::Unauthorized,
                "the API key is not valid header text",
            )
            .into_response()
        }
    };
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    match admit(&gate, key.as_deref(), ip).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(f) => f.into_response(),
    }
}

async fn admit(gate: &Gate, key: Option<&str>, ip: IpAddr) -> Result<Caller, Failure> {
    let clock = DefaultClock::default();
    let Some(key) = key else {
        if gate.limiters.anonymous.len() > MAX_TRACKED_KEYS {
            gate.limiters.anonymous.retain_recent();
        }
        gate.limiters.anonymous.check_key(&ip).map_err(|n| {
            rate_limited(
                n.wait_time_from(clock.now()),
                "requests from this address; partners with an API key have a higher limit",
            )
        })?;
        return Ok(Caller(None));
    };
    let partner = gate.partners.by_api_key(key).await.map_err(|e| {
        tracing::error!(error = %e, "partner lookup failed");
        Failure::new(
            ErrorCode::Unavailable,
            "cannot check the API key now; retry",
        )
    })?;
    let partner =
        partner.ok_or_else(|| Failure::new(ErrorCode::Unauthorized, "unknown API key"))?;
    if !partner.active {
        return Err(Failure::new(
            ErrorCode::Forbidden,
            "this API key has been revoked",
        ));
    }
    gate.limiters
        .partners
        .check_key(&partner.partner_id)
        .map_err(|n| rate_limited(n.wait_time_from(clock.now()), "requests for this API key"))?;
    Ok(Caller(Some(partner)))
}

/// The CORS layer for the configured origins; with none, browsers on
/// other origins get no CORS headers and so no access.
pub(crate) fn cors(origins: &[String]) -> CorsLayer {
    if origins.is_empty() {
        return CorsLayer::new();
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| axum::http::HeaderValue::from_str(o.trim()).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
        .allow_headers([
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderName::from_static(API_KEY_HEADER),
        ])
        .expose_headers([axum::http::header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}
