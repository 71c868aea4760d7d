//! Gateway callbacks (`/hooks/NAME/…`): the gateway's adapter checks the request (signature,
//! URL token, source address) before anything is read and reads it into events; one function
//! (`answer::inbound::heard`) acts on them. Refused callbacks are logged and change nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::ApiError;
use crate::answer::inbound;
use crate::channel::event::{Callback, Refused};
use crate::core::Core;

pub async fn hook(
    State(core): State<Arc<Core>>,
    Path((gateway, rest)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let Some(channel) = core.gateways.get(&gateway).cloned() else {
        return Err(ApiError::not_found("no such gateway (or it takes no callbacks)"));
    };
    let query = query.unwrap_or_default();
    let url = format!(
        "{}/hooks/{gateway}/{rest}{}{query}",
        core.settings.http.public_url.trim_end_matches('/'),
        if query.is_empty() { "" } else { "?" },
    );
    let req = Callback {
        rest,
        query,
        url,
        headers,
        body,
        peer: peer.map(|Extension(ConnectInfo(a))| a.ip()),
        now: core.clock.wall_secs(),
    };
    let events = channel.callback(&req).map_err(|e| {
        tracing::warn!(gateway, error = %e, "gateway callback refused");
        match e {
            Refused::NotFound => ApiError::not_found("no such hook on this gateway"),
            Refused::Unauthenticated(m) => ApiError::unauthorized(&m),
            Refused::Forbidden(m) => ApiError::forbidden(&m),
            Refused::BadBody(m) => ApiError::bad_request(&m),
        }
    })?;
    let outcomes = inbound::heard_together(&core, &gateway, events).await?;
    let a = channel.answer(&req, &outcomes);
    Ok((
        StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK),
        [(header::CONTENT_TYPE, a.content_type)],
        a.body,
    )
        .into_response())
}
