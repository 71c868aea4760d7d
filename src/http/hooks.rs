//! Gateway callbacks (`/hooks/NAME/…`): the signature of SPEC §5 is checked before anything
//! is read; unsigned, stale or forged callbacks are refused and logged, and change nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

use super::ApiError;
use crate::answer::inbound;
use crate::channel::signature;
use crate::channel::Gateways;
use crate::core::Core;

fn verify(core: &Core, gateway: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let secret = Gateways::callback_secret(&core.settings, gateway)?
        .ok_or_else(|| ApiError::not_found("no such gateway (or it takes no callbacks)"))?;
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    signature::verify(
        secrecy::ExposeSecret::expose_secret(&secret),
        h(signature::TIMESTAMP_HEADER),
        h(signature::SIGNATURE_HEADER),
        body,
        core.clock.now_secs(),
    )
    .map_err(|e| {
        tracing::warn!(gateway, error = %e, "gateway callback refused");
        ApiError::unauthorized(&format!("signature: {e}"))
    })
}

#[derive(Deserialize)]
struct Sms {
    from: String,
    text: String,
}

pub async fn inbound(
    State(core): State<Arc<Core>>,
    Path(gateway): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = body?;
    verify(&core, &gateway, &headers, &body)?;
    let sms: Sms = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(&format!("body: {e}")))?;
    let out = inbound::sms_reply(&core, &gateway, &sms.from, &sms.text).await?;
    // An unknown number is kept as an inbound message; it changes nothing else.
    let status = if out.outcome == inbound::SmsResult::UnknownNumber {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    Ok((status, Json(out)))
}

pub async fn status(
    State(core): State<Arc<Core>>,
    Path(gateway): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = body?;
    verify(&core, &gateway, &headers, &body)?;
    let r: inbound::Receipt =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(&format!("body: {e}")))?;
    let outcome = inbound::receipt(&core, &gateway, &r).await?;
    Ok(Json(serde_json::json!({"outcome": outcome})))
}
