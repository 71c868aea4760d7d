//! The HTTP surface of SPEC §4: the JSON API, gateway hooks, the answer page and health.
//! Handlers are thin: they check who is asking and hand over to `ingest`, `inbound`,
//! `report` and the store.

mod answer;
mod api;
mod console;
mod error;
mod hooks;
mod login;
pub mod openapi;
pub mod routes;
pub mod session;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, State};
use axum::http::{HeaderMap, HeaderName, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use secrecy::ExposeSecret;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

pub use error::ApiError;

use crate::channel::signature;
use crate::config::{self, Role};
use crate::core::Core;

pub fn router(core: Arc<Core>) -> Router {
    let limit = core.settings.http.max_body_bytes;
    let http = core.settings.http.clone();
    // One table, so that every route is in it (see `routes`); axum merges the methods of
    // one path.
    let routes = routes::table()
        .into_iter()
        .fold(Router::new(), |r, route| r.route(route.path, route.handler))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(move |req, next| {
            declared_too_large(limit, req, next)
        }))
        .with_state(core);
    edge(routes, &http)
}

/// The layers every route sits behind, outermost first: sensitive headers marked (so no
/// `Debug` of a request prints them), a span per request, panics answered with an opaque 500,
/// the request time-out (503) and the body time-out (408 through [`ApiError`]). A function of
/// its own so that tests can put it over routes of their own.
fn edge(routes: Router, http: &config::Http) -> Router {
    routes.layer(
        ServiceBuilder::new()
            .layer(SetSensitiveRequestHeadersLayer::new([
                axum::http::header::AUTHORIZATION,
                HeaderName::from_static(signature::SIGNATURE_HEADER),
            ]))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(request_span)
                    .on_request(())
                    .on_response(on_response)
                    .on_body_chunk(())
                    .on_eos(())
                    // 5xx are logged once where they arise (ApiError, the panic handler).
                    .on_failure(()),
            )
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(HandleErrorLayer::new(timed_out))
            .timeout(http.request_timeout)
            .layer(RequestBodyTimeoutLayer::new(http.body_timeout)),
    )
}

/// A body declared larger than `http.max_body_bytes` is refused (413) before any handler runs:
/// `DefaultBodyLimit` only acts where a handler reads the body, and some refuse or ignore it
/// first (a forged answer link, a stand-down), which would leave a client sending megabytes to
/// a route that answers as if they were fine. Undeclared (chunked) bodies are still cut off by
/// `DefaultBodyLimit` where they are read.
async fn declared_too_large(
    limit: usize,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &format!("请求正文过大 the request body is larger than http.max_body_bytes ({limit} bytes)"),
        )
        .into_response();
    }
    next.run(req).await
}

/// The request's span: its method and the *route* it matched (`/a/{token}`), never the URI,
/// which holds answer tokens and query strings. Status and latency are filled in at the end.
fn request_span<B>(req: &Request<B>) -> Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("(unmatched)", MatchedPath::as_str);
    tracing::info_span!(
        "request",
        method = %req.method(),
        route = %route,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    )
}

fn on_response<B>(res: &Response<B>, latency: Duration, span: &Span) {
    // Whole microseconds, so a line reads `latency_ms=0.299`, not 0.29924500000000004.
    let latency_ms = latency.as_micros() as f64 / 1000.0;
    span.record("status", res.status().as_u16());
    span.record("latency_ms", latency_ms);
    tracing::debug!(status = res.status().as_u16(), latency_ms, "answered");
}

/// A handler panicked: logged here once (inside the request's span), answered with an opaque
/// 500 in the §4 error shape.
fn panic_response(err: Box<dyn Any + Send + 'static>) -> axum::response::Response {
    let what = err
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| err.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)");
    tracing::error!(panic = what, "request handler panicked");
    ApiError::internal().into_response()
}

/// The request time-out fired (`http.request_timeout`): the server gave up, so 503, which a
/// client or proxy may retry; 408 is kept for a client too slow to send its body.
async fn timed_out(err: tower::BoxError) -> ApiError {
    if err.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "处理超时，请稍后重试 the request took too long (http.request_timeout); try again later",
        )
    } else {
        anyhow::anyhow!(err).into()
    }
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
        .find(|t| constant_eq(t.token.expose_secret().as_bytes(), presented.trim().as_bytes()));
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

/// Anonymous callers (load balancers) get `{"status":"ready"}` or a bare 503; a viewer token
/// adds the backend, the feeds (URLs, last errors) and the database's error, which are no
/// business of anyone on the network. Either way the answer comes from `core.health`, read
/// from the database at most once per `READY_TTL`.
async fn readyz(State(core): State<Arc<Core>>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    let viewer = headers.contains_key("authorization") && authorize(&core, &headers, Role::Viewer).is_ok();
    let ready = core.health.ready(&core.store).await;
    if !viewer {
        ready.map_err(|_| ApiError::unavailable("数据库未就绪 the database is not ready"))?;
        return Ok(axum::Json(serde_json::json!({"status": "ready"})));
    }
    ready.map_err(|e| ApiError::unavailable(&e))?;
    Ok(axum::Json(
        serde_json::json!({"status": "ready", "database": format!("{:?}", core.store.backend()).to_lowercase(),
            "feeds": core.feeds.details()}),
    ))
}

/// Prometheus text (names and labels in `core::recorder` and `core::feeds`).
async fn metrics(State(core): State<Arc<Core>>) -> Result<impl IntoResponse, ApiError> {
    let text = core.metrics_text().await?;
    Ok(([("content-type", "text/plain; version=0.0.4")], text))
}

#[cfg(test)]
mod tests {
    //! The edge layers over routes of the tests' own (a panicking handler, one that never
    //! answers, one that reports what it was handed), so no such route exists outside tests.

    use std::sync::{Arc, Mutex};

    use axum::body::{Body, Bytes};
    use axum::extract::rejection::BytesRejection;
    use tower::ServiceExt;
    use tracing::instrument::WithSubscriber;

    use axum::routing::{get, post};

    use super::*;

    /// Log output captured for one test, not the process (a subscriber of its own).
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Logs {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Logs {
        fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
            let w = self.clone();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
                .with_ansi(false)
                .with_writer(move || w.clone())
                .finish()
        }
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    async fn boom() -> &'static str {
        panic!("kaboom at step 3")
    }

    fn app(toml: &str) -> Router {
        let http = config::Settings::from_toml(toml).unwrap().http;
        let routes = Router::new()
            .route("/boom", get(boom))
            .route(
                "/stall",
                get(|| async {
                    std::future::pending::<()>().await;
                    "never"
                }),
            )
            .route(
                "/a/{token}",
                get(|h: HeaderMap| async move {
                    let sensitive = |n: &str| h.get(n).is_some_and(|v| v.is_sensitive());
                    format!(
                        "{} {}",
                        sensitive("authorization"),
                        sensitive(signature::SIGNATURE_HEADER)
                    )
                }),
            )
            .route(
                "/body",
                post(
                    |b: Result<Bytes, BytesRejection>| async move { b.map(|_| "ok").map_err(ApiError::from) },
                ),
            );
        edge(routes, &http)
    }

    /// One request through the layers, answered within five seconds or failed.
    async fn call(app: Router, req: Request<Body>) -> (StatusCode, String) {
        let res = tokio::time::timeout(Duration::from_secs(5), app.oneshot(req))
            .await
            .expect("an answer within the deadline")
            .unwrap();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn get_req(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn the_span_names_the_route_never_the_uri() {
        let logs = Logs::default();
        let req = Request::get("/a/TOKEN-abc123?t=QUERY-xyz789")
            .header("authorization", "Bearer BEARER-s3cret")
            .header(signature::SIGNATURE_HEADER, "v1=SIG-0000")
            .body(Body::empty())
            .unwrap();
        let (status, body) = call(app(""), req).with_subscriber(logs.subscriber()).await;
        assert_eq!(status, StatusCode::OK);
        // Both headers reached the handler marked sensitive.
        assert_eq!(body, "true true");
        let text = logs.text();
        assert!(text.contains("request{method=GET route=/a/{token}"), "{text}");
        assert!(
            text.contains("status=200") && text.contains("latency_ms="),
            "{text}"
        );
        for secret in ["TOKEN-abc123", "QUERY-xyz789", "BEARER-s3cret", "SIG-0000"] {
            assert!(!text.contains(secret), "{secret} in the logs: {text}");
        }
    }

    #[tokio::test]
    async fn a_panic_is_an_opaque_json_500_logged_once() {
        let logs = Logs::default();
        let (status, body) = call(app(""), get_req("/boom"))
            .with_subscriber(logs.subscriber())
            .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "internal", "{body}");
        assert!(!body.contains("kaboom"), "{body}");
        let text = logs.text();
        assert_eq!(text.matches("request handler panicked").count(), 1, "{text}");
        assert!(text.contains("kaboom") && text.contains("route=/boom"), "{text}");
    }

    #[tokio::test]
    async fn a_request_over_its_time_is_a_json_503() {
        let started = std::time::Instant::now();
        let (status, body) = call(app("[http]\nrequest_timeout = \"100ms\""), get_req("/stall")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() >= Duration::from_millis(100));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "timeout", "{body}");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("http.request_timeout"));
    }

    #[tokio::test]
    async fn a_body_that_stops_coming_is_a_json_408() {
        use futures::StreamExt;
        let stalled = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"<alert"))])
            .chain(futures::stream::pending());
        let req = Request::post("/body").body(Body::from_stream(stalled)).unwrap();
        let (status, body) = call(app("[http]\nbody_timeout = \"100ms\""), req).await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "body_timeout", "{body}");
        // A whole body is untouched by it.
        let req = Request::post("/body").body(Body::from("<alert/>")).unwrap();
        assert_eq!(
            call(app("[http]\nbody_timeout = \"100ms\""), req).await,
            (StatusCode::OK, "ok".into())
        );
    }

    #[test]
    fn time_outs_must_be_positive() {
        let e = config::Settings::from_toml("[http]\nheader_timeout = \"0s\"").unwrap_err();
        assert!(e.to_string().contains("http.header_timeout"), "{e}");
        let d = config::Settings::from_toml("").unwrap().http;
        assert_eq!(
            (d.request_timeout, d.body_timeout, d.header_timeout),
            (
                Duration::from_secs(30),
                Duration::from_secs(10),
                Duration::from_secs(10)
            )
        );
    }
}
