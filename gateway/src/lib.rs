//! The client gateway: REST and websocket API for wallet apps.
//!
//! Stateless: quotes come from liquidity, swaps from the hot wallet (and
//! its store), status changes from the `swap-events` topic. One entry point,
//! [`run`].

pub mod error;
pub mod ops;
mod service;
pub mod signing;
mod web;
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
use proto::api::{AcceptRequest, PsbtRequest, RefundAddressRequest, RelayRequest, RfqRequest};
use proto::{Assets, Pair};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::Failure;
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
    ))
)]
#[derive(Debug)]
pub struct ApiDoc;

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
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
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

/// Why a relay failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The node refused the transaction for good (the message says why).
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
        .route("/v1/swaps/{swap_id}/psbt", post(deposit_psbt))
        .route(
            "/v1/swaps/{swap_id}/ethereum-transaction",
            post(ethereum_transaction),
        )
        .route("/v1/swaps/{swap_id}/relay", post(relay))
        .route("/v1/ws", get(ws::upgrade))
        .route("/v1/openapi.json", get(openapi))
        .merge(ops::routes().merge(web::routes()))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            max_body_bytes,
        ))
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
        (status = 200, description = "A firm quote, honoured once before it expires", body = proto::api::Quote),
        (status = 400, description = "Bad amount, unknown asset, pair not offered, amount out of range", body = proto::api::ApiError),
        (status = 503, description = "Not enough liquidity, or trading halted", body = proto::api::ApiError)
    )
)]
async fn rfq(
    State(s): State<Service>,
    body: Result<Json<RfqRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<proto::api::Quote>> {
    let Json(req) = body?;
    Ok(Json(s.rfq(&req).await?))
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
        (status = 410, description = "Quote expired", body = proto::api::ApiError)
    )
)]
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
        (status = 400, description = "Not a Bitcoin deposit, the swap takes no deposit now, an invalid input or address, or inputs that do not cover amount and fee", body = proto::api::ApiError),
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
