//! The client gateway: REST and websocket API for wallet apps.
//!
//! Stateless: quotes come from liquidity, swaps from the hot wallet (and
//! its store), status changes from the `swap-events` topic. One entry point,
//! [`run`].

pub mod error;
pub mod limits;
pub mod notify;
pub mod ops;
pub mod partners;
mod service;
pub mod signing;
mod web;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use hot_wallet::HotWalletApi;
use liquidity::LiquidityApi;
use proto::api::{AcceptRequest, PsbtRequest, RefundAddressRequest, RelayRequest, RfqRequest};
use proto::{Assets, Pair};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::Failure;
pub use limits::{Caller, Limits, Rate};
pub use notify::{LogNotifier, Notifier, WebhookConfig};
pub use partners::{NewPartner, Partner, Partners};
pub use service::Service;

/// The OpenAPI document of the REST API, generated from the handlers and
/// the `proto` types; served at `/v1/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Swap engine client API",
        description = "Quotes, swaps and their status for wallet apps. Amounts go in as decimal strings in whole units and come out both as decimals and as base units. Errors are `{code, message}`. The websocket protocol at /v1/ws is described in docs/websocket.md.",
        version = "1"
    ),
    paths(
        health,
        assets,
        pairs,
        prices,
        rfq,
        accept,
        swap,
        refund_address,
        deposit_psbt,
        ethereum_transaction,
        relay,
        webhook_deliveries,
        ws_doc
    ),
    components(schemas(
        proto::api::RfqRequest,
        proto::api::AmountSide,
        proto::api::Quote,
        proto::api::AcceptRequest,
        proto::api::RefundAddressRequest,
        proto::api::KeyOrigin,
        proto::api::PsbtInput,
        proto::api::PsbtRequest,
        proto::api::PsbtResponse,
        proto::api::RelayRequest,
        proto::api::EthTransactionRequest,
        proto::api::UnsignedEthTransaction,
        proto::api::RelayResponse,
        proto::api::DepositInstructions,
        proto::api::SwapStatus,
        proto::api::DepositView,
        proto::api::PaymentView,
        proto::api::SwapView,
        proto::api::LadderRung,
        proto::api::IndicativePrices,
        proto::api::ErrorCode,
        proto::api::ApiError,
        proto::AssetSpec,
        notify::WebhookBody,
        notify::DeliveryView,
    )),
    modifiers(&PartnerKey),
    security((), ("api_key" = []))
)]
#[derive(Debug)]
pub struct ApiDoc;

/// Declares the partner API key header in the document.
#[derive(Debug)]
struct PartnerKey;

impl utoipa::Modify for PartnerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Api-Key",
                "A partner app's API key. Optional: without it requests are anonymous and rate-limited per client IP; with it they are rate-limited per partner, the partner's fee is added to its quotes, and its swaps' status changes are posted to its webhook. An unknown key is 401, a revoked one 403. Every route may answer 429 (`rate_limited`, with `Retry-After` in seconds), and every route with a body 413 (`payload_too_large`).",
            ))),
        );
    }
}

/// The OpenAPI document as JSON.
pub fn openapi_json() -> String {
    use utoipa::OpenApi;
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

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
    /// Largest request body accepted, in bytes (413 above).
    pub max_body_bytes: usize,
    /// Rate limits and CORS.
    pub limits: Limits,
    /// Webhook retries.
    pub webhooks: WebhookConfig,
}

/// What the gateway talks to.
#[derive(Clone)]
pub struct GatewayDeps {
    pub liquidity: Arc<dyn LiquidityApi>,
    pub hot_wallet: Arc<dyn HotWalletApi>,
    pub chains: Arc<dyn DepositChains>,
    pub bus: infra::bus::SharedBus,
    /// Metrics, readiness and the desk (`ops`); `None` in a gateway process
    /// that holds neither liquidity nor the swap store.
    pub ops: Option<ops::Ops>,
    /// The gateway's own tables (partners, webhook deliveries).
    pub db: infra::db::Db,
    /// Push, email and SMS.
    pub notifier: Arc<dyn Notifier>,
}

impl std::fmt::Debug for GatewayDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayDeps").finish_non_exhaustive()
    }
}

/// What the gateway asks of the chains for wallets that sign elsewhere.
#[async_trait::async_trait]
pub trait DepositChains: Send + Sync + 'static {
    /// Broadcasts a signed transaction; returns its id. A transaction the
    /// node already has is a success.
    async fn relay(&self, network: proto::Network, raw_tx: &[u8]) -> Result<String, RelayError>;
    /// The node's fee estimate for confirmation within 2 blocks, sat/vB.
    async fn bitcoin_fee_rate(&self, network: proto::Network) -> Result<u64, String>;
    /// The confirmed UTXOs paying the descriptors' scripts (Bitcoin Core's
    /// `scantxoutset`), and the chain height of the scan. `Rejected` when the
    /// node refuses a descriptor.
    async fn scan_utxos(
        &self,
        network: proto::Network,
        descriptors: &[String],
    ) -> Result<(u64, Vec<signing::FoundUtxo>), RelayError>;
    /// Chain id, `from`'s next nonce (pending), the gas the call needs and
    /// EIP-1559 fees, from the node.
    async fn ethereum_params(
        &self,
        network: proto::Network,
        from: alloy_primitives::Address,
        to: alloy_primitives::Address,
        value: alloy_primitives::U256,
        data: alloy_primitives::Bytes,
    ) -> Result<signing::EthTxParams, String>;
}

/// Why a relay (or a UTXO scan) failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The node refused the transaction (or descriptor) for good (the
    /// message says why).
    #[error("rejected: {0}")]
    Rejected(String),
    /// The node could not be asked; the client may retry the same bytes.
    #[error("unavailable: {0}")]
    Unavailable(String),
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
    #[error("gateway database: {0}")]
    Db(#[from] partners::PartnerError),
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
    let app = router(service);
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

/// The HTTP routes, behind the API-key and rate-limit gate, the body
/// limit and CORS.
pub fn router(service: Service) -> Router {
    let gate = service.gate();
    let max_body_bytes = service.config().max_body_bytes;
    let cors = limits::cors(&service.config().limits.cors_origins);
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/assets", get(assets))
        .route("/v1/pairs", get(pairs))
        .route("/v1/prices", get(prices))
        .route("/v1/quotes", post(rfq))
        .route("/v1/swaps", post(accept))
        .route("/v1/swaps/{swap_id}", get(swap))
        .route("/v1/swaps/{swap_id}/refund-address", post(refund_address))
        .route("/v1/swaps/{swap_id}/psbt", post(deposit_psbt))
        .route(
            "/v1/swaps/{swap_id}/ethereum-transaction",
            post(ethereum_transaction),
        )
        .route("/v1/swaps/{swap_id}/relay", post(relay))
        .route("/v1/ws", get(ws::upgrade))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/partner/webhook-deliveries", get(webhook_deliveries))
        .merge(ops::routes().merge(web::routes()))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(gate, limits::gate))
        .layer(cors)
        .with_state(service)
}

type ApiResult<T> = Result<T, Failure>;

/// Documents the websocket endpoint; the route itself is `ws::upgrade`.
#[utoipa::path(
    get,
    path = "/v1/ws",
    responses((status = 101, description = "Websocket upgrade; the protocol is in docs/websocket.md"))
)]
#[allow(dead_code)]
async fn ws_doc() {}

async fn openapi() -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi_json(),
    )
}

#[utoipa::path(get, path = "/v1/health", responses((status = 200, description = "The gateway is up", body = Object)))]
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/v1/assets", responses((status = 200, description = "The assets this engine trades", body = [proto::AssetSpec])))]
async fn assets(State(s): State<Service>) -> Json<Vec<proto::AssetSpec>> {
    Json(s.config().assets.iter().cloned().collect())
}

#[utoipa::path(get, path = "/v1/pairs", responses((status = 200, description = "The pairs offered, as BASE/QUOTE strings", body = [String])))]
async fn pairs(State(s): State<Service>) -> Json<Vec<Pair>> {
    Json(s.config().pairs.clone())
}

#[derive(Debug, Deserialize)]
struct PriceQuery {
    pair: String,
}

#[utoipa::path(
    get,
    path = "/v1/prices",
    params(("pair" = String, Query, description = "A pair, e.g. BTC/ETH")),
    responses(
        (status = 200, description = "Indicative prices for a few sizes; not a commitment", body = proto::api::IndicativePrices),
        (status = 400, description = "Pair not offered", body = proto::api::ApiError),
        (status = 503, description = "No fresh price (venues stale, trading halted)", body = proto::api::ApiError)
    )
)]
async fn prices(
    State(s): State<Service>,
    query: Result<Query<PriceQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<proto::api::IndicativePrices>> {
    let Query(q) = query.map_err(|e| Failure::bad_request(format!("query: {}", e.body_text())))?;
    Ok(Json(s.indicative(&q.pair).await?))
}

#[utoipa::path(
    post,
    path = "/v1/quotes",
    request_body = proto::api::RfqRequest,
    responses(
        (status = 200, description = "A firm quote, honoured once before it expires; with a partner's API key its fee is included and shown as `partner_fee`", body = proto::api::Quote),
        (status = 400, description = "Bad amount, unknown asset, pair not offered, amount out of range", body = proto::api::ApiError),
        (status = 401, description = "Unknown API key (`unauthorized`)", body = proto::api::ApiError),
        (status = 403, description = "Revoked API key (`forbidden`)", body = proto::api::ApiError),
        (status = 413, description = "Body too large (`payload_too_large`)", body = proto::api::ApiError),
        (status = 429, description = "Rate limited (`rate_limited`); wait `Retry-After` seconds", body = proto::api::ApiError, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Not enough liquidity, or trading halted", body = proto::api::ApiError)
    )
)]
async fn rfq(
    State(s): State<Service>,
    caller: Option<Extension<Caller>>,
    body: Result<Json<RfqRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<proto::api::Quote>> {
    let Json(req) = body?;
    Ok(Json(s.rfq(&req, partner_of(&caller)).await?))
}

fn partner_of(caller: &Option<Extension<Caller>>) -> Option<&Partner> {
    caller.as_ref().and_then(|Extension(Caller(p))| p.as_ref())
}

#[utoipa::path(
    post,
    path = "/v1/swaps",
    request_body = proto::api::AcceptRequest,
    responses(
        (status = 201, description = "Swap opened; deposit instructions inside", body = proto::api::SwapView),
        (status = 200, description = "The swap this idempotency key already opened", body = proto::api::SwapView),
        (status = 400, description = "Invalid address or request", body = proto::api::ApiError),
        (status = 404, description = "Unknown quote", body = proto::api::ApiError),
        (status = 409, description = "Quote already used, or the key was used for another quote", body = proto::api::ApiError),
        (status = 410, description = "Quote expired", body = proto::api::ApiError),
        (status = 401, description = "Unknown API key (`unauthorized`)", body = proto::api::ApiError),
        (status = 403, description = "Revoked API key (`forbidden`)", body = proto::api::ApiError),
        (status = 413, description = "Body too large (`payload_too_large`)", body = proto::api::ApiError),
        (status = 429, description = "Rate limited (`rate_limited`); wait `Retry-After` seconds", body = proto::api::ApiError, headers(("Retry-After" = u64, description = "Seconds to wait")))
    )
)]
async fn accept(
    State(s): State<Service>,
    caller: Option<Extension<Caller>>,
    body: Result<Json<AcceptRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<proto::api::SwapView>)> {
    let Json(req) = body?;
    let (created, view) = s.accept(&req, partner_of(&caller)).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

#[utoipa::path(
    get,
    path = "/v1/swaps/{swap_id}",
    params(("swap_id" = String, Path, description = "The swap's id (UUID)")),
    responses(
        (status = 200, description = "The swap as it stands", body = proto::api::SwapView),
        (status = 400, description = "Not a swap id", body = proto::api::ApiError),
        (status = 404, description = "No such swap", body = proto::api::ApiError)
    )
)]
async fn swap(
    State(s): State<Service>,
    Path(swap_id): Path<String>,
) -> ApiResult<Json<proto::api::SwapView>> {
    Ok(Json(s.swap(&swap_id).await?))
}

#[utoipa::path(
    post,
    path = "/v1/swaps/{swap_id}/refund-address",
    params(("swap_id" = String, Path, description = "The swap's id (UUID)")),
    request_body = proto::api::RefundAddressRequest,
    responses(
        (status = 200, description = "Refund address recorded", body = proto::api::SwapView),
        (status = 400, description = "Invalid address, or the swap needs none", body = proto::api::ApiError),
        (status = 404, description = "No such swap", body = proto::api::ApiError)
    )
)]
async fn refund_address(
    State(s): State<Service>,
    Path(swap_id): Path<String>,
    body: Result<Json<RefundAddressRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<proto::api::SwapView>> {
    let Json(req) = body?;
    Ok(Json(s.refund_address(&swap_id, &req.refund_address).await?))
}

#[utoipa::path(
    post,
    path = "/v1/swaps/{swap_id}/psbt",
    params(("swap_id" = String, Path, description = "The swap's id (UUID)")),
    request_body = proto::api::PsbtRequest,
    responses(
        (status = 200, description = "An unsigned PSBT (BIP174, base64) paying the deposit's exact amount from the listed UTXOs, RBF signalled, change to the change address; sign it with any standard signer and send it back through /relay or broadcast it yourself", body = proto::api::PsbtResponse),
        (status = 400, description = "Not a Bitcoin deposit, the swap takes no deposit now, an invalid input, descriptor or address, no confirmed UTXO for the descriptors, or inputs that do not cover amount and fee", body = proto::api::ApiError),
        (status = 404, description = "No such swap", body = proto::api::ApiError),
        (status = 503, description = "No fee estimate and none given", body = proto::api::ApiError)
    )
)]
async fn deposit_psbt(
    State(s): State<Service>,
    Path(swap_id): Path<String>,
    body: Result<Json<PsbtRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<proto::api::PsbtResponse>> {
    let Json(req) = body?;
    Ok(Json(s.deposit_psbt(&swap_id, &req).await?))
}

#[utoipa::path(
    post,
    path = "/v1/swaps/{swap_id}/ethereum-transaction",
    params(("swap_id" = String, Path, description = "The swap's id (UUID)")),
    request_body = proto::api::EthTransactionRequest,
    responses(
        (status = 200, description = "An unsigned EIP-1559 transaction paying the deposit from `from` (ETH to the deposit address, or the token's transfer), nonce, gas and fees from the node; sign it and broadcast it, or send it to /relay", body = proto::api::UnsignedEthTransaction),
        (status = 400, description = "Not an Ethereum deposit, the swap takes no deposit now, or an invalid address", body = proto::api::ApiError),
        (status = 404, description = "No such swap", body = proto::api::ApiError),
        (status = 503, description = "The node could not be asked", body = proto::api::ApiError)
    )
)]
async fn ethereum_transaction(
    State(s): State<Service>,
    Path(swap_id): Path<String>,
    body: Result<Json<proto::api::EthTransactionRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<proto::api::UnsignedEthTransaction>> {
    let Json(req) = body?;
    Ok(Json(s.ethereum_transaction(&swap_id, &req.from).await?))
}

#[utoipa::path(
    post,
    path = "/v1/swaps/{swap_id}/relay",
    params(("swap_id" = String, Path, description = "The swap's id (UUID)")),
    request_body = proto::api::RelayRequest,
    responses(
        (status = 200, description = "Broadcast (or already known to the node)", body = proto::api::RelayResponse),
        (status = 400, description = "Not a transaction, it does not pay this swap's deposit, or the node refused it (code transaction_rejected)", body = proto::api::ApiError),
        (status = 404, description = "No such swap", body = proto::api::ApiError),
        (status = 503, description = "The node could not be reached: retry with the same bytes", body = proto::api::ApiError)
    )
)]
async fn relay(
    State(s): State<Service>,
    Path(swap_id): Path<String>,
    body: Result<Json<RelayRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<proto::api::RelayResponse>> {
    let Json(req) = body?;
    Ok(Json(s.relay(&swap_id, &req.raw_tx).await?))
}

#[cfg(test)]
mod tests {
    /// docs/openapi.json is the generated document, kept in the repo for
    /// review; `UPDATE_OPENAPI=1 cargo test -p gateway` rewrites it.
    #[test]
    fn openapi_document_is_current_and_complete() {
        let json = super::openapi_json();
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for path in [
            "/v1/health",
            "/v1/assets",
            "/v1/pairs",
            "/v1/prices",
            "/v1/quotes",
            "/v1/swaps",
            "/v1/swaps/{swap_id}",
            "/v1/swaps/{swap_id}/psbt",
            "/v1/swaps/{swap_id}/relay",
            "/v1/swaps/{swap_id}/ethereum-transaction",
            "/v1/swaps/{swap_id}/refund-address",
            "/v1/ws",
        ] {
            assert!(
                doc["paths"].get(path).is_some(),
                "{path} missing from the OpenAPI document"
            );
        }
        for schema in [
            "Quote",
            "SwapView",
            "RfqRequest",
            "AcceptRequest",
            "ApiError",
            "ErrorCode",
        ] {
            assert!(
                doc["components"]["schemas"].get(schema).is_some(),
                "schema {schema} missing"
            );
        }
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&file, json + "\n").unwrap();
            return;
        }
        let on_disk = std::fs::read_to_string(&file).unwrap_or_default();
        assert_eq!(
            on_disk.trim_end(),
            json.trim_end(),
            "docs/openapi.json is stale; run UPDATE_OPENAPI=1 cargo test -p gateway and review the diff"
        );
    }
}

#[derive(Debug, Deserialize)]
struct DeliveriesQuery {
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/partner/webhook-deliveries",
    params(("limit" = Option<u32>, Query, description = "At most this many, newest first (default 100, at most 1000)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The calling partner's webhook delivery log: each status change of its swaps, its state (pending, delivered, failed), attempts and the last answer; docs/webhooks.md", body = [notify::DeliveryView]),
        (status = 401, description = "No API key, or an unknown one (`unauthorized`)", body = proto::api::ApiError),
        (status = 403, description = "Revoked API key (`forbidden`)", body = proto::api::ApiError),
        (status = 429, description = "Rate limited (`rate_limited`); wait `Retry-After` seconds", body = proto::api::ApiError)
    )
)]
async fn webhook_deliveries(
    State(s): State<Service>,
    caller: Option<Extension<Caller>>,
    query: Result<Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<notify::DeliveryView>>> {
    let Query(q) = query.map_err(|e| Failure::bad_request(format!("query: {}", e.body_text())))?;
    let partner = partner_of(&caller).ok_or_else(|| {
        Failure::new(
            proto::api::ErrorCode::Unauthorized,
            "this route needs a partner's API key in X-Api-Key",
        )
    })?;
    Ok(Json(
        s.webhook_deliveries(partner, q.limit.unwrap_or(100).min(1000))
            .await?,
    ))
}
