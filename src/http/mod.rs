//! The HTTP surface of SPEC §4: the JSON API, gateway hooks, the answer page and health.
//! Handlers are thin: they check who is asking and hand over to `ingest`, `inbound`,
//! `report` and the store.

mod answer;
mod api;
mod error;
mod hooks;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

pub use error::ApiError;

use crate::config::Role;
use crate::core::Core;

pub fn router(core: Arc<Core>) -> Router {
    let limit = core.settings.http.max_body_bytes;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/warnings",
            post(api::post_warning).get(api::list_warnings),
        )
        .route("/api/v1/warnings/{id}", get(api::get_warning))
        .route("/api/v1/incidents", get(api::list_incidents))
        .route("/api/v1/incidents/{id}", get(api::get_incident))
        .route("/api/v1/incidents/{id}/close", post(api::close_incident))
        .route("/api/v1/incidents/{id}/report", get(api::report))
        .route("/api/v1/callouts/{id}/ack", post(api::ack_callout))
        .route("/api/v1/evacuations", post(api::post_evacuation))
        .route(
            "/api/v1/responses",
            post(api::post_response).get(api::list_responses),
        )
        .route("/hooks/{gateway}/inbound", post(hooks::inbound))
        .route("/hooks/{gateway}/status", post(hooks::status))
        .route("/hooks/{gateway}/voice", post(hooks::status))
        .route("/a/{token}", get(answer::show).post(answer::submit))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(core)
}

/// The caller's name when its bearer token's role allows `needed`.
pub fn authorize(core: &Core, headers: &HeaderMap, needed: Role) -> Result<String, ApiError> {
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("a bearer token is required"))?;
    let found = core
        .tokens
        .iter()
        .find(|t| constant_eq(t.token.as_bytes(), presented.trim().as_bytes()));
    match found {
        Some(t) if t.role.allows(needed) => Ok(t.name.clone()),
        Some(_) => Err(ApiError::forbidden(&format!(
            "this token's role may not do this (needs {needed:?})"
        ))),
        None => Err(ApiError::unauthorized("unknown token")),
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn readyz(State(core): State<Arc<Core>>) -> Result<impl IntoResponse, ApiError> {
    core.store
        .ready()
        .await
        .map_err(|e| ApiError::unavailable(&format!("{e:#}")))?;
    Ok(axum::Json(
        serde_json::json!({"status": "ready", "database": format!("{:?}", core.store.backend()).to_lowercase(),
            "feeds": core.feeds.details()}),
    ))
}

/// Prometheus text: call-outs by state and jobs waiting, read from the database so that every
/// instance reports the same truth.
async fn metrics(State(core): State<Arc<Core>>) -> Result<impl IntoResponse, ApiError> {
    let states: Vec<(String, i64)> = sqlx::query_as("SELECT state, COUNT(*) FROM callouts GROUP BY state")
        .fetch_all(core.store.pool())
        .await?;
    let jobs: Vec<(String, i64)> = sqlx::query_as("SELECT kind, COUNT(*) FROM jobs GROUP BY kind")
        .fetch_all(core.store.pool())
        .await?;
    let mut out = String::from("# TYPE jiaoying_callouts gauge\n");
    for (s, n) in states {
        out.push_str(&format!("jiaoying_callouts{{state=\"{s}\"}} {n}\n"));
    }
    out.push_str("# TYPE jiaoying_jobs gauge\n");
    for (k, n) in jobs {
        out.push_str(&format!("jiaoying_jobs{{kind=\"{k}\"}} {n}\n"));
    }
    out.push_str(&core.feeds.metrics());
    Ok(([("content-type", "text/plain; version=0.0.4")], out))
}
