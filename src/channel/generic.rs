//! The generic HTTP JSON gateway of SPEC §5: a signed POST per message, a kept-alive
//! connection pool, a concurrency limit, and the protocol's retry semantics (429 with
//! Retry-After and 5xx: later; other 4xx: never).

use std::time::Duration;

use anyhow::Result;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretSlice};
use tokio::sync::Semaphore;

use super::signature;
use super::{Channel, Outgoing, SendError};
use crate::clock::Clock;
use crate::domain::ChannelKind;

pub struct Generic {
    url: String,
    secret: SecretSlice<u8>,
    client: reqwest::Client,
    permits: Semaphore,
    clock: Clock,
}

impl Generic {
    pub fn new(
        url: &str,
        secret: SecretSlice<u8>,
        concurrency: usize,
        timeout: Duration,
        clock: Clock,
    ) -> Result<Generic> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(concurrency.max(1))
            .build()?;
        Ok(Generic {
            url: url.to_string(),
            secret,
            client,
            permits: Semaphore::new(concurrency.max(1)),
            clock,
        })
    }
}

#[derive(serde::Serialize)]
struct Body<'a> {
    to: &'a str,
    text: &'a str,
    #[serde(rename = "ref")]
    reference: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
}

impl Channel for Generic {
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<String, SendError>> {
        Box::pin(async move {
            let _permit = self.permits.acquire().await.map_err(|_| SendError::Transient {
                reason: "gateway shutting down".into(),
                retry_after: None,
            })?;
            let body = serde_json::to_vec(&Body {
                to: &msg.to,
                text: &msg.text,
                reference: msg.key.clone(),
                kind: (msg.kind == ChannelKind::Voice).then_some("voice"),
            })
            .map_err(|e| SendError::Permanent {
                reason: e.to_string(),
            })?;
            let ts = self.clock.now_secs();
            let resp = self
                .client
                .post(&self.url)
                .header("content-type", "application/json")
                .header(signature::TIMESTAMP_HEADER, ts.to_string())
                .header(
                    signature::SIGNATURE_HEADER,
                    signature::sign(self.secret.expose_secret(), ts, &body),
                )
                .body(body)
                .send()
                .await
                .map_err(|e| SendError::Transient {
                    reason: without_url(e),
                    retry_after: None,
                })?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = resp.text().await.unwrap_or_default();
            if status.is_success() {
                let id = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("id").and_then(|i| i.as_str().map(String::from)))
                    .unwrap_or_default();
                Ok(id)
            } else if status.as_u16() == 429 || status.is_server_error() {
                Err(SendError::Transient {
                    reason: format!("HTTP {status}: {}", clip(&text)),
                    retry_after,
                })
            } else {
                Err(SendError::Permanent {
                    reason: format!("HTTP {status}: {}", clip(&text)),
                })
            }
        })
    }
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

/// reqwest errors carry the URL, which may hold credentials in a query string.
fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    format!("{kind}: {}", e.without_url())
}
