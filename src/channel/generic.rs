//! The generic HTTP JSON gateway of SPEC §5: a signed POST per message, a kept-alive
//! connection pool (its concurrency is the guard's, `channel/guard.rs`), and the protocol's retry semantics (429 with
//! Retry-After and 5xx: later; other 4xx: never); its signed callbacks (`inbound`, `status`,
//! `voice`) read into events. A signed callback seen again (the same timestamp and body) is a
//! replay: its id is the digest of what was signed.

use std::time::Duration;

use anyhow::Result;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretSlice};

use super::event::{Answer, Callback, Event, MessageRef, Outcome, Refused, Voice, What};
use super::signature;
use super::{clip, Channel, Outgoing, SendError};
use crate::clock::Clock;
use crate::domain::ChannelKind;

pub struct Generic {
    url: String,
    secret: SecretSlice<u8>,
    client: reqwest::Client,
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
            let body = serde_json::to_vec(&Body {
                to: &msg.to,
                text: &msg.text,
                reference: msg.key.clone(),
                kind: (msg.kind == ChannelKind::Voice).then_some("voice"),
            })
            .map_err(|e| SendError::Permanent {
                reason: e.to_string(),
            })?;
            let ts = self.clock.wall_secs();
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
                .map_err(super::request_failed)?;
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
            } else if status.as_u16() == 429 || status.as_u16() == 401 || status.is_server_error() {
                // 401 is a signature refused: our timestamp more than 5 minutes off the
                // gateway's (a step of the machine's clock in flight), or a wrong secret. Tried
                // again with a fresh timestamp; a wrong secret keeps failing, opens the
                // gateway's circuit and says so in the log, and the deadline escalates.
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

    fn callback(&self, req: &Callback) -> Result<Vec<Event>, Refused> {
        if !matches!(req.rest.as_str(), "inbound" | "status" | "voice") {
            return Err(Refused::NotFound);
        }
        let id = self.verify(req)?;
        let what = if req.rest == "inbound" {
            let r: Reply = body(&req.body)?;
            What::Reply {
                from: r.from,
                text: r.text,
            }
        } else {
            let r: Receipt = body(&req.body)?;
            let message = MessageRef::Key(r.reference);
            let detail = r.detail.unwrap_or_default();
            match r.status.as_str() {
                "delivered" | "failed" => What::Receipt {
                    message,
                    delivered: r.status == "delivered",
                    detail: if detail.is_empty() { r.id } else { detail },
                },
                "answered" => What::Voice {
                    message,
                    result: Voice::Keys(detail),
                },
                "heard" => What::Voice {
                    message,
                    result: Voice::Heard,
                },
                other => What::Voice {
                    message,
                    result: Voice::NotReached(other.chars().take(40).collect()),
                },
            }
        };
        Ok(vec![Event { id, what }])
    }

    fn answer(&self, req: &Callback, outcomes: &[Outcome]) -> Answer {
        let first = outcomes.first();
        // An unknown number is kept as an inbound message; it changes nothing else (SPEC §8).
        let status = match first {
            Some(o) if req.rest == "inbound" && o.outcome == "unknown-number" => 404,
            _ => 200,
        };
        Answer::json(status, serde_json::to_value(first).unwrap_or_default())
    }
}

#[derive(serde::Deserialize)]
struct Reply {
    from: String,
    text: String,
}

#[derive(serde::Deserialize)]
struct Receipt {
    #[serde(default)]
    id: String,
    #[serde(rename = "ref")]
    reference: String,
    status: String,
    #[serde(default)]
    detail: Option<String>,
}

impl Generic {
    fn verify(&self, req: &Callback) -> Result<String, Refused> {
        let ts = req.header(signature::TIMESTAMP_HEADER);
        signature::verify(
            self.secret.expose_secret(),
            ts,
            req.header(signature::SIGNATURE_HEADER),
            &req.body,
            req.now,
        )
        .map_err(|e| Refused::Unauthenticated(format!("signature: {e}")))?;
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(ts.unwrap_or_default().trim().as_bytes());
        h.update(b".");
        h.update(&req.body);
        Ok(format!("signed:{}", &hex::encode(h.finalize())[..32]))
    }
}

fn body<'a, T: serde::Deserialize<'a>>(b: &'a [u8]) -> Result<T, Refused> {
    serde_json::from_slice(b).map_err(|e| Refused::BadBody(format!("body: {e}")))
}
