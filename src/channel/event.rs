//! What a gateway tells us, in one shape whatever the provider: a callback request as it
//! arrived, and the events read from it (a reply, a receipt, a voice result, a key press).
//! Each adapter reads its provider's bodies into [`Event`]s; `answer::inbound::heard` is the
//! one function that acts on them. Nothing here touches the database.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::http::HeaderMap;

/// A callback as it reached `/hooks/{gateway}/{rest}`.
#[derive(Debug, Clone)]
pub struct Callback {
    /// What follows `/hooks/{gateway}/` in the path (e.g. `inbound`, `TOKEN/sms-report`).
    pub rest: String,
    /// The query string, without `?` (empty when there is none).
    pub query: String,
    /// The URL the provider requested, as configured (`http.public_url` + path + query):
    /// what Twilio signs.
    pub url: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The peer address, for a provider's source-address allow-list.
    pub peer: Option<IpAddr>,
    /// Unix seconds, the machine's time of day (`Clock::wall_secs`), for signature windows.
    pub now: i64,
}

impl Callback {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why a callback is refused (kept in the log, never acted on).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    /// No such hook on this gateway (404).
    #[error("no such hook")]
    NotFound,
    /// Missing or wrong token or signature, or a stale timestamp (401).
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// A source address outside the gateway's allow-list (403).
    #[error("source address not allowed: {0}")]
    Forbidden(String),
    /// The body does not read (400).
    #[error("bad body: {0}")]
    BadBody(String),
}

/// One thing a provider reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The provider's own id for this report (a reply's sequence id, a receipt's message id
    /// and status …): a report seen again under the same id changes nothing.
    pub id: String,
    pub what: What,
}

#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// An SMS from a phone.
    Reply { from: String, text: String },
    /// A delivery receipt: delivered or not (delivered is never an answer).
    Receipt {
        message: MessageRef,
        delivered: bool,
        detail: String,
    },
    /// The outcome of a voice call.
    Voice { message: MessageRef, result: Voice },
}

/// Which of our sends a report is about.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageRef {
    /// Our message key (`ref`, Aliyun `OutId`, Tencent `SessionContext`).
    Key(String),
    /// The provider's id for the send (Aliyun `BizId`/`CallId`, Tencent `SerialNo`, Twilio SID).
    Provider(String),
}

/// What became of a voice call.
#[derive(Debug, Clone, PartialEq)]
pub enum Voice {
    /// Keys pressed ("1" answers).
    Keys(String),
    /// Heard to the end without a key (answers only where the policy says so).
    Heard,
    /// Not answered, busy, hung up, failed … (the provider's words).
    NotReached(String),
}

/// What became of one event (returned to the adapter for its answer to the provider).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Outcome {
    /// `ack`, `evacuation`, `duplicate`, `delivered`, `replayed`, `unknown-ref`, …
    pub outcome: &'static str,
    pub callout_id: Option<i64>,
    pub incident_code: Option<String>,
    pub late: Option<bool>,
}

/// The answer an adapter gives the provider for a callback it accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    pub fn json(status: u16, body: serde_json::Value) -> Answer {
        Answer {
            status,
            content_type: "application/json",
            body: body.to_string(),
        }
    }

    pub fn xml(body: impl Into<String>) -> Answer {
        Answer {
            status: 200,
            content_type: "text/xml; charset=utf-8",
            body: body.into(),
        }
    }
}

/// A send that had no receipt yet, for a provider's query API (reconciliation).
#[derive(Debug, Clone)]
pub struct Unconfirmed {
    pub key: String,
    pub provider_id: Option<String>,
    pub to: String,
    /// Unix ms of the send.
    pub sent_at: i64,
}

/// What a provider says about a send whose answer we lost (asked before sending it again).
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// It arrived: this is the provider's id; do not send again.
    Accepted(String),
    /// The provider has no such send: sending again is safe.
    Absent,
    /// The provider cannot tell (no query API, or its answer does not settle it): send
    /// again; a repeat of the same `ref` is the one duplicate SPEC §5 allows.
    Unknown,
    /// The query itself failed (time-out, refusal): the provider may have the send, so it is
    /// not sent again now; the lookup is tried again with the send's backoff.
    Failed(String),
}
