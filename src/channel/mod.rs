//! Channels: one trait at the edge (send one message, get the gateway's reference or an error
//! that says whether retrying can help; ask whether a send whose answer was lost arrived; read
//! the gateway's callbacks into [`event::Event`]s) and one implementation per gateway kind.
//! Adding a provider is one file here and one variant in `config::Gateway`. An adapter owns
//! its provider's wire format and signing; it must not touch the database or decide what a
//! reply or receipt does (that is `answer::inbound`).

pub mod acs3;
mod aliyun_sms;
mod aliyun_voice;
pub mod event;
mod generic;
mod guard;
pub mod hook_guard;
mod loopback;
pub mod signature;
mod smtp;
pub mod tc3;
pub mod template;
mod tencent_sms;
pub mod twilio_signature;
mod twilio_sms;
mod twilio_voice;
mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretSlice};

use crate::clock::Clock;
use crate::config::{self, Settings};
use crate::domain::{ChannelKind, Facts};
use event::{Answer, Callback, Event, Lookup, Outcome, Refused, Unconfirmed};

/// One message to one address, as a gateway sees it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The attempt id (one try).
    pub attempt_id: i64,
    /// The message key: the `ref` of the generic protocol, the same on every try of this
    /// message (a gateway drops a repeat), echoed in receipts.
    pub key: String,
    pub kind: ChannelKind,
    /// E.164 phone for SMS/voice, an address for e-mail.
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// What the message says, for providers that fill an approved template's variables
    /// (`template_params`) instead of sending `text`.
    pub facts: Arc<Facts>,
    /// No other route is left for this person: a gateway whose circuit is open is waited for
    /// (`guard`), not skipped.
    pub last_route: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    /// Try again later (429, 5xx, time-out, connection refused …).
    #[error("transient: {reason}")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// No answer came (a time-out after the request was written): it may have arrived. Tried
    /// again later, after asking the gateway ([`Channel::lookup`]).
    #[error("unanswered: {reason}")]
    Unanswered { reason: String },
    /// The provider's limit for this recipient or account is reached (Aliyun
    /// `isv.BUSINESS_LIMIT_CONTROL`, Tencent's frequency codes, our own caps, an open
    /// circuit): fail over now, do not hammer.
    #[error("capped: {reason}")]
    Capped { reason: String },
    /// Our circuit breaker holds this gateway open (it kept failing): another route now, else
    /// at `retry_at` (ms), when it is probed again. Never a reason to give up on a person.
    #[error("circuit open: {reason}")]
    CircuitOpen { reason: String, retry_at: i64 },
    /// This will never work (bad number, refused by the provider …): fail over.
    #[error("permanent: {reason}")]
    Permanent { reason: String },
}

pub trait Channel: Send + Sync {
    /// Sends; `Ok` carries the gateway's message id.
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<String, SendError>>;

    /// Whether a send whose answer was lost (a time-out, a crash mid-send) arrived, asked
    /// before it is sent again. The default cannot tell.
    fn lookup<'a>(&'a self, _msg: &'a Outgoing) -> BoxFuture<'a, Lookup> {
        Box::pin(async { Lookup::Unknown })
    }

    /// Checks a callback (token, signature, source address) and reads it into events.
    fn callback(&self, _req: &Callback) -> Result<Vec<Event>, Refused> {
        Err(Refused::NotFound)
    }

    /// The answer to give the provider for a callback whose events were handled.
    fn answer(&self, _req: &Callback, outcomes: &[Outcome]) -> Answer {
        Answer::json(200, serde_json::json!({ "outcomes": outcomes }))
    }

    /// Receipts the provider did not push, asked of its query API for sends still without one.
    fn reconcile<'a>(&'a self, _sends: &'a [Unconfirmed]) -> BoxFuture<'a, Vec<Event>> {
        Box::pin(async { Vec::new() })
    }
}

/// The configured gateways by name, each behind its [`guard::Guarded`] limits, with the
/// per-recipient caps dispatch counts in the database.
#[derive(Clone, Default)]
pub struct Gateways {
    map: HashMap<String, Arc<dyn Channel>>,
    caps: HashMap<String, Vec<config::Cap>>,
}

impl Gateways {
    pub fn build(settings: &Settings, clock: &Clock) -> Result<Gateways> {
        let mut map: HashMap<String, Arc<dyn Channel>> = HashMap::new();
        let mut caps = HashMap::new();
        for (name, g) in &settings.gateways {
            let ch: Arc<dyn Channel> = match g {
                config::Gateway::Loopback { .. } => Arc::new(loopback::Loopback),
                config::Gateway::Generic {
                    url,
                    secret_env,
                    secret_file,
                    timeout,
                    limits,
                } => {
                    let secret = config::secret(
                        &format!("gateways.{name}.secret"),
                        secret_env.as_deref(),
                        secret_file.as_deref(),
                    )?
                    .with_context(|| {
                        format!("gateways.{name}: the secret (secret_env/secret_file) is not set")
                    })?;
                    Arc::new(generic::Generic::new(
                        url,
                        bytes(&secret),
                        limits.concurrency,
                        *timeout,
                        clock.clone(),
                    )?)
                }
                config::Gateway::Smtp {
                    host,
                    port,
                    tls,
                    from,
                    username,
                    password_env,
                    password_file,
                    timeout,
                    ..
                } => {
                    let password = config::secret(
                        &format!("gateways.{name}.password"),
                        password_env.as_deref(),
                        password_file.as_deref(),
                    )?;
                    Arc::new(smtp::Smtp::new(
                        host,
                        *port,
                        *tls,
                        from,
                        username.clone(),
                        password,
                        *timeout,
                    )?)
                }
                config::Gateway::AliyunSms(c) => {
                    Arc::new(aliyun_sms::AliyunSms::new(name, c, clock.clone())?)
                }
                config::Gateway::AliyunVoice(c) => {
                    Arc::new(aliyun_voice::AliyunVoice::new(name, c, clock.clone())?)
                }
                config::Gateway::TencentSms(c) => {
                    Arc::new(tencent_sms::TencentSms::new(name, c, clock.clone())?)
                }
                config::Gateway::Webhook(c) => Arc::new(webhook::Webhook::new(name, c, clock.clone())?),
                config::Gateway::TwilioSms(g) => Arc::new(twilio_sms::TwilioSms::new(
                    name,
                    g,
                    &settings.http.public_url,
                    clock.clone(),
                )?),
                config::Gateway::TwilioVoice(g) => Arc::new(twilio_voice::TwilioVoice::new(
                    name,
                    g,
                    &settings.http.public_url,
                    clock.clone(),
                )?),
            };
            caps.insert(name.clone(), g.caps(name)?);
            let rate = g.limits().breaker_rate;
            if !(rate > 0.0 && rate <= 1.0) {
                anyhow::bail!(
                    "gateways.{name}.limits.breaker_rate: {rate} is not a share of failures between 0 and 1 (e.g. 0.75)"
                );
            }
            map.insert(
                name.clone(),
                Arc::new(guard::Guarded::new(ch, &g.limits(), clock.clone())),
            );
        }
        Ok(Gateways { map, caps })
    }

    /// The per-recipient caps of a gateway (none: uncapped).
    pub fn caps(&self, name: &str) -> &[config::Cap] {
        self.caps.get(name).map(Vec::as_slice).unwrap_or_default()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Channel>> {
        self.map.get(name)
    }
}

/// What a failed HTTP request to a gateway means for its send, the one rule for every adapter:
/// a connection never made reached nobody (try again later); anything after it (a time-out, a
/// reset, a body cut off) may have been written, so the gateway is asked before it goes again.
pub(crate) fn request_failed(e: reqwest::Error) -> SendError {
    if e.is_connect() {
        SendError::Transient {
            reason: without_url(e),
            retry_after: None,
        }
    } else {
        SendError::Unanswered {
            reason: without_url(e),
        }
    }
}

/// A reqwest error without its URL, which may hold credentials (a robot's key) or the message.
pub(crate) fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    format!("{kind}: {}", e.without_url())
}

/// The first 200 characters of a gateway's answer, for an error message.
pub(crate) fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

/// An HMAC key from a secret string, still wrapped.
fn bytes(s: &secrecy::SecretString) -> SecretSlice<u8> {
    s.expose_secret().as_bytes().to_vec().into()
}
