//! The pages: the reference swap page (`/`, `/swap`) for wallet users and
//! the trading desk (`/desk`). Plain HTML, CSS and ES modules from
//! `gateway/web/`, compiled into the binary (no build step); they use only
//! the public API (`/v1/...`, `/v1/ws`, `/v1/desk/...`). The deposit's QR
//! code is drawn here, as SVG, from the swap's payment URI.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::Failure;
use crate::service::Service;
use proto::api::ErrorCode;

const SWAP_HTML: &str = include_str!("../web/swap.html");
const DESK_HTML: &str = include_str!("../web/desk.html");
const STYLE_CSS: &str = include_str!("../web/style.css");
const SWAP_JS: &str = include_str!("../web/swap.js");
const DESK_JS: &str = include_str!("../web/desk.js");
const COMMON_JS: &str = include_str!("../web/common.js");

pub(crate) fn routes() -> Router<Service> {
    Router::new()
        .route("/", get(|| page(SWAP_HTML)))
        .route("/swap", get(|| page(SWAP_HTML)))
        .route("/desk", get(|| page(DESK_HTML)))
        .route("/web/style.css", get(|| asset("text/css", STYLE_CSS)))
        .route("/web/swap.js", get(|| asset("text/javascript", SWAP_JS)))
        .route("/web/desk.js", get(|| asset("text/javascript", DESK_JS)))
        .route(
            "/web/common.js",
            get(|| asset("text/javascript", COMMON_JS)),
        )
        .route("/v1/swaps/{swap_id}/qr.svg", get(deposit_qr))
}

/// The pages load scripts and styles from this origin only and talk only
/// to it (and its websocket).
const CSP: &str = "default-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; \
                   style-src 'self'; script-src 'self'; frame-ancestors 'none'";

async fn page(html: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
        .into_response()
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The swap's deposit payment URI (BIP21 or EIP-681) as a QR code, SVG.
async fn deposit_qr(
    State(s): State<Service>,
    Path(swap_id): Path<String>,
) -> Result<Response, Failure> {
    let view = s.swap(&swap_id).await?;
    let svg = qr_svg(&view.deposit.payment_uri)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        svg,
    )
        .into_response())
}

/// `text` as a QR code (error correction M), at least 240 px square.
pub fn qr_svg(text: &str) -> Result<String, Failure> {
    use qrcode::render::svg;
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| Failure::new(ErrorCode::Internal, format!("QR code: {e}")))?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build())
}
