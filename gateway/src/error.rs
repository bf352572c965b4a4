//! The one HTTP error type: tells the client what was wrong with *their*
//! request, in a code and a sentence, and hides internals.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hot_wallet::HotWalletError;
use liquidity::LiquidityError;
use proto::api::{ApiError, ErrorCode};

/// An error answer with its HTTP status.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub error: ApiError,
    /// Seconds to wait before retrying, sent as `Retry-After`.
    pub retry_after_secs: Option<u64>,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure {
            status: status_of(code),
            error: ApiError::new(code, message),
            retry_after_secs: None,
        }
    }

    /// Adds a `Retry-After` of `secs`.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
}

pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest
        | ErrorCode::InvalidAmount
        | ErrorCode::InvalidAddress
        | ErrorCode::UnknownAsset
        | ErrorCode::UnsupportedPair
        | ErrorCode::AmountTooSmall
        | ErrorCode::AmountTooLarge
        | ErrorCode::TransactionRejected => StatusCode::BAD_REQUEST,
        ErrorCode::QuoteNotFound | ErrorCode::SwapNotFound => StatusCode::NOT_FOUND,
        ErrorCode::QuoteExpired => StatusCode::GONE,
        ErrorCode::QuoteAlreadyUsed | ErrorCode::IdempotencyConflict => StatusCode::CONFLICT,
        ErrorCode::InsufficientLiquidity | ErrorCode::TradingHalted | ErrorCode::Unavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.error)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl From<LiquidityError> for Failure {
    fn from(e: LiquidityError) -> Self {
        let code = e.code();
        if code == ErrorCode::Internal {
            tracing::error!(error = %e, "liquidity failed");
            return Failure::new(code, "internal error; the request can be retried");
        }
        Failure::new(code, e.to_string())
    }
}

impl From<HotWalletError> for Failure {
    fn from(e: HotWalletError) -> Self {
        match e {
            HotWalletError::SwapNotFound(id) => {
                Failure::new(ErrorCode::SwapNotFound, format!("swap {id} not found"))
            }
            HotWalletError::Invalid(m) => Failure::bad_request(m),
            HotWalletError::UnsupportedPayout(n) => Failure::new(
                ErrorCode::UnsupportedPair,
                format!("payouts on {n} are not available yet"),
            ),
            HotWalletError::IdempotencyConflict(k) => Failure::new(
                ErrorCode::IdempotencyConflict,
                format!("idempotency key {k:?} was already used to accept a different quote"),
            ),
            HotWalletError::Chain(m) => {
                tracing::warn!(error = %m, "chain access failed");
                Failure::new(
                    ErrorCode::Unavailable,
                    "a chain node is unavailable; retry shortly",
                )
            }
            other => {
                tracing::error!(error = %other, "hot wallet failed");
                Failure::new(
                    ErrorCode::Internal,
                    "internal error; the request can be retried",
                )
            }
        }
    }
}

impl From<JsonRejection> for Failure {
    fn from(r: JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Failure::new(
                ErrorCode::PayloadTooLarge,
                "the request body is larger than the gateway accepts",
            );
        }
        Failure::bad_request(format!("request body: {}", r.body_text()))
    }
}
