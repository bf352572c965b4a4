//! The client gateway: REST and websocket API for wallet apps.
//!
//! Stateless: quotes come from liquidity, swaps from the hot wallet (and
//! its store), status changes from the `swap-events` topic. One entry point,
//! [`run`].

pub mod error;
mod service;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use hot_wallet::HotWalletApi;
use liquidity::LiquidityApi;
use proto::api::{AcceptRequest, RefundAddressRequest, RfqRequest};
use proto::{Assets, Pair};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::Failure;
pub use service::Service;

/// Gateway configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub assets: Assets,
    /// Pairs offered to clients.
    pub pairs: Vec<Pair>,
    /// How often indicative prices are pushed to subscribers.
    pub price_interval: Duration,
    /// Consumer group of this instance on `swap-events`.
    pub instance_id: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

/// What the gateway talks to.
#[derive(Clone)]
pub struct GatewayDeps {
    pub liquidity: Arc<dyn LiquidityApi>,
    pub hot_wallet: Arc<dyn HotWalletApi>,
    pub bus: infra::bus::SharedBus,
}

impl std::fmt::Debug for GatewayDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayDeps").finish_non_exhaustive()
    }
}

/// Errors starting the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot subscribe to swap events: {0}")]
    Bus(String),
}

/// Binds the listener and serves until `shutdown`; returns the bound
/// address (useful with port 0).
pub async fn run(
    config: GatewayConfig,
    deps: GatewayDeps,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<SocketAddr, GatewayError> {
    let service = Service::start(config.clone(), deps, shutdown.clone(), tracker).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| GatewayError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| GatewayError::Bind {
        addr: config.listen,
        source,
    })?;
    let app = router(service, config.max_body_bytes);
    tracker.spawn(async move {
        let server = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "gateway server stopped");
        }
    });
    tracing::info!(%addr, "gateway.listening");
    Ok(addr)
}

/// The HTTP routes.
pub fn router(service: Service, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/assets", get(assets))
        .route("/v1/pairs", get(pairs))
        .route("/v1/prices", get(prices))
        .route("/v1/quotes", post(rfq))
        .route("/v1/swaps", post(accept))
        .route("/v1/swaps/{swap_id}", get(swap))
        .route("/v1/swaps/{swap_id}/refund-address", post(refund_address))
        .route("/v1/ws", get(ws::upgrade))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            max_body_bytes,
        ))
        .with_state(service)
}

type ApiResult<T> = Result<T, Failure>;

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn assets(State(s): State<Service>) -> Json<Vec<proto::AssetSpec>> {
    Json(s.config().assets.iter().cloned().collect())
}

async fn pairs(State(s): State<Service>) -> Json<Vec<Pair>> {
    Json(s.config().pairs.clone())
}

#[derive(Debug, Deserialize)]
struct PriceQuery {
    pair: String,
}

async fn prices(
    State(s): State<Service>,
    query: Result<Query<PriceQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<proto::api::IndicativePrices>> {
    let Query(q) = query.map_err(|e| Failure::bad_request(format!("query: {}", e.body_text())))?;
    Ok(Json(s.indicative(&q.pair).await?))
}

async fn rfq(
    State(s): State<Service>,
    body: Result<Json<RfqRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<proto::api::Quote>> {
    let Json(req) = body?;
    Ok(Json(s.rfq(&req).await?))
}

async fn accept(
    State(s): State<Service>,
    body: Result<Json<AcceptRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<proto::api::SwapView>)> {
    let Json(req) = body?;
    let (created, view) = s.accept(&req).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

async fn swap(
    State(s): State<Service>,
    Path(swap_id): Path<String>,
) -> ApiResult<Json<proto::api::SwapView>> {
    Ok(Json(s.swap(&swap_id).await?))
}

async fn refund_address(
    State(s): State<Service>,
    Path(swap_id): Path<String>,
    body: Result<Json<RefundAddressRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<proto::api::SwapView>> {
    let Json(req) = body?;
    Ok(Json(s.refund_address(&swap_id, &req.refund_address).await?))
}
