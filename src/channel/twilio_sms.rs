//! Twilio SMS (`twilio-sms`, PROVIDERS.md §4.1–4.3): a form POST to `Messages.json` with Basic
//! auth (AccountSid:AuthToken) whose `StatusCallback` brings the receipt to
//! `/hooks/NAME/status`, and inbound SMS at `/hooks/NAME/inbound`, both checked with
//! `X-Twilio-Signature` over the URL built from `http.public_url`. Also the part both Twilio
//! kinds share ([`Api`]: the client, error codes, the callback check), used by `twilio_voice`.
//!
//! Owns Twilio's wire format only; what a reply or receipt does is `answer::inbound`'s.
//!
//! Looking up a send whose answer was lost: Twilio takes no client reference, so the messages
//! to that number (`GET Messages.json?To=…&From=…`, newest first) created within
//! [`LOOKUP_WINDOW`] are compared with ours by their text, the answer link masked (its token
//! carries an expiry, so it differs between tries of one message; the rest does not).
//! `DateSent>=` is not used: a message still queued has no `date_sent` yet and would be
//! missed, which is exactly the case a lost answer leaves.

use super::{clip, request_failed};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::future::BoxFuture;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use secrecy::{ExposeSecret, SecretString};

use super::event::{Answer, Callback, Event, Lookup, MessageRef, Outcome, Refused, What};
use super::twilio_signature;
use super::{Channel, Outgoing, SendError};
use crate::clock::Clock;
use crate::config;

/// Twilio's limit for `Body`.
const BODY_LIMIT: usize = 1600;
/// How far back a lost send is looked for: a retry waits at most an hour (dispatch caps the
/// backoff there), so the try before it was sent within the last hour or so.
pub const LOOKUP_WINDOW: Duration = Duration::from_secs(2 * 3600);

/// What is left alone in a query value we build (keys are `c12-j34`).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The account, its credentials and its client: what both Twilio kinds share.
pub(super) struct Api {
    /// The gateway's name (`/hooks/NAME/…`).
    name: String,
    /// `{endpoint}/2010-04-01/Accounts/{AccountSid}`.
    account_url: String,
    account_sid: String,
    token: SecretString,
    client: reqwest::Client,
    public_url: String,
    pub(super) clock: Clock,
}

impl Api {
    pub(super) fn new(name: &str, g: &config::Twilio, public_url: &str, clock: Clock) -> Result<Api> {
        if g.account_sid.trim().is_empty() {
            bail!("gateways.{name}.account_sid: missing");
        }
        let token = std::env::var(&g.auth_token_env)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .with_context(|| format!("gateways.{name}.auth_token_env: {} is not set", g.auth_token_env))?;
        let client = reqwest::Client::builder()
            .timeout(g.timeout)
            .connect_timeout(g.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(g.limits.concurrency.max(1))
            .build()?;
        Ok(Api {
            name: name.to_string(),
            account_url: format!(
                "{}/2010-04-01/Accounts/{}",
                g.endpoint.trim_end_matches('/'),
                utf8_percent_encode(g.account_sid.trim(), QUERY_VALUE)
            ),
            account_sid: g.account_sid.trim().to_string(),
            token: SecretString::from(token.trim().to_string()),
            client,
            public_url: public_url.trim_end_matches('/').to_string(),
            clock,
        })
    }

    /// The URL of one of this gateway's hooks for one message: what Twilio calls and signs.
    pub(super) fn hook(&self, rest: &str, key: &str) -> String {
        format!(
            "{}/hooks/{}/{rest}?ref={}",
            self.public_url,
            self.name,
            utf8_percent_encode(key, QUERY_VALUE)
        )
    }

    /// Creates a resource (`Messages.json`, `Calls.json`); `Ok` is its `sid`.
    pub(super) async fn create(&self, resource: &str, form: &[(&str, String)]) -> Result<String, SendError> {
        let resp = self
            .client
            .post(format!("{}/{resource}", self.account_url))
            .basic_auth(&self.account_sid, Some(self.token.expose_secret()))
            .header("accept-charset", "utf-8")
            .form(form)
            .send()
            .await
            .map_err(request_failed)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = match resp.text().await {
            Ok(t) => t,
            // The status came, so the request arrived; what became of it is not known.
            Err(e) if (200..300).contains(&status) => return Err(request_failed(e)),
            Err(_) => String::new(),
        };
        if (200..300).contains(&status) {
            let sid = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("sid").and_then(|s| s.as_str()).map(String::from));
            return sid.ok_or_else(|| SendError::Unanswered {
                reason: format!("HTTP {status} without a sid: {}", clip(&text)),
            });
        }
        Err(refusal(status, retry_after, &text))
    }

    /// Lists resources (`Messages.json?To=…`); errors are for the log only.
    pub(super) async fn list(
        &self,
        resource: &str,
        query: &[(&str, String)],
    ) -> Result<serde_json::Value, String> {
        let resp = self
            .client
            .get(format!("{}/{resource}", self.account_url))
            .basic_auth(&self.account_sid, Some(self.token.expose_secret()))
            .query(query)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        resp.json().await.map_err(|e| e.without_url().to_string())
    }

    /// Checks `X-Twilio-Signature` over the URL Twilio requested (built from
    /// `http.public_url`) and all the parameters received; returns the parameters.
    pub(super) fn check(&self, req: &Callback) -> Result<Vec<(String, String)>, Refused> {
        let Some(sig) = req.header(twilio_signature::HEADER) else {
            return Err(Refused::Unauthenticated("X-Twilio-Signature missing".into()));
        };
        let token = self.token.expose_secret().as_bytes();
        let json = req
            .header("content-type")
            .is_some_and(|c| c.trim_start().starts_with("application/json"));
        if json {
            if !twilio_signature::verify_json(token, &req.url, &req.body, sig) {
                return Err(Refused::Unauthenticated(
                    "X-Twilio-Signature does not match".into(),
                ));
            }
            let v: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&req.body).map_err(|e| Refused::BadBody(format!("body: {e}")))?;
            return Ok(v
                .into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => (k, s),
                    other => (k, other.to_string()),
                })
                .collect());
        }
        let body =
            std::str::from_utf8(&req.body).map_err(|_| Refused::BadBody("body is not UTF-8".into()))?;
        let params = form(body);
        if !twilio_signature::verify_form(token, &req.url, &params, sig) {
            return Err(Refused::Unauthenticated(
                "X-Twilio-Signature does not match".into(),
            ));
        }
        Ok(params)
    }
}

/// What a Twilio refusal means (its error body: `{"code":21211,"message":…,"status":400}`).
pub(super) fn refusal(status: u16, retry_after: Option<Duration>, body: &str) -> SendError {
    let v: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let code = v.as_ref().and_then(|v| v.get("code")).and_then(|c| c.as_i64());
    let message = v
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(|m| m.as_str())
        .map(clip)
        .unwrap_or_else(|| clip(body));
    let reason = match code {
        Some(c) => format!("HTTP {status}, Twilio {c}: {message}"),
        None => format!("HTTP {status}: {message}"),
    };
    match code {
        // Too many requests.
        Some(20429) => SendError::Transient { reason, retry_after },
        // The sender's queue is full (more than ~10 h of messages): hammering makes it worse.
        Some(21611) | Some(30001) => SendError::Capped { reason },
        // Unsubscribed (STOP), not a valid To, not a mobile number: never for this number.
        Some(21610) | Some(21211) | Some(21614) => SendError::Permanent { reason },
        _ if status == 429 => SendError::Transient { reason, retry_after },
        _ if status >= 500 => SendError::Transient { reason, retry_after },
        _ => SendError::Permanent { reason },
    }
}

/// `application/x-www-form-urlencoded` pairs, in the order received (repeats kept: the
/// signature covers each).
pub(super) fn form(s: &str) -> Vec<(String, String)> {
    let decode = |p: &str| {
        let p = p.replace('+', " ");
        percent_decode_str(&p).decode_utf8_lossy().into_owned()
    };
    s.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(kv), String::new()),
        })
        .collect()
}

/// The first value of a parameter, if present and not empty.
pub(super) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// `text` without its URLs (an answer link's token differs on every try; a voice does not
/// read links out).
pub(super) fn without_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = [rest.find("https://"), rest.find("http://")]
        .into_iter()
        .flatten()
        .min()
    {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail.find(|c: char| !c.is_ascii_graphic()).unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

pub struct TwilioSms {
    api: Api,
    from: Option<String>,
    messaging_service_sid: Option<String>,
}

impl TwilioSms {
    pub fn new(name: &str, g: &config::Twilio, public_url: &str, clock: Clock) -> Result<TwilioSms> {
        let from = g.from.clone().filter(|f| !f.trim().is_empty());
        let service = g.messaging_service_sid.clone().filter(|s| !s.trim().is_empty());
        if from.is_none() && service.is_none() {
            bail!("gateways.{name}.from: missing (or messaging_service_sid)");
        }
        Ok(TwilioSms {
            api: Api::new(name, g, public_url, clock)?,
            from,
            messaging_service_sid: service,
        })
    }

    fn body(msg: &Outgoing) -> String {
        super::template::cut(&msg.text, BODY_LIMIT)
    }
}

impl Channel for TwilioSms {
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<String, SendError>> {
        Box::pin(async move {
            let mut form = vec![("To", msg.to.clone())];
            // A messaging service picks the sender itself; From then is left out.
            match (&self.messaging_service_sid, &self.from) {
                (Some(sid), _) => form.push(("MessagingServiceSid", sid.clone())),
                (None, Some(from)) => form.push(("From", from.clone())),
                (None, None) => unreachable!("checked when built"),
            }
            form.push(("Body", Self::body(msg)));
            form.push(("StatusCallback", self.api.hook("status", &msg.key)));
            self.api.create("Messages.json", &form).await
        })
    }

    fn lookup<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Lookup> {
        Box::pin(async move {
            let mut query = vec![("To", msg.to.clone()), ("PageSize", "50".to_string())];
            if let (None, Some(from)) = (&self.messaging_service_sid, &self.from) {
                query.push(("From", from.clone()));
            }
            match self.api.list("Messages.json", &query).await {
                Ok(page) => {
                    let since = self.api.clock.now_secs() - LOOKUP_WINDOW.as_secs() as i64;
                    find_sent(&page, &Self::body(msg), since)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "twilio: looking up a lost send failed");
                    Lookup::Failed(format!("Messages list: {e}"))
                }
            }
        })
    }

    fn callback(&self, req: &Callback) -> Result<Vec<Event>, Refused> {
        if !matches!(req.rest.as_str(), "status" | "inbound") {
            return Err(Refused::NotFound);
        }
        let p = self.api.check(req)?;
        let sid = param(&p, "MessageSid")
            .or_else(|| param(&p, "SmsSid"))
            .ok_or_else(|| Refused::BadBody("MessageSid missing".into()))?
            .to_string();
        if req.rest == "inbound" {
            let from = param(&p, "From")
                .ok_or_else(|| Refused::BadBody("From missing".into()))?
                .to_string();
            let text = param(&p, "Body").unwrap_or_default().to_string();
            return Ok(vec![Event {
                id: sid,
                what: What::Reply { from, text },
            }]);
        }
        let status = param(&p, "MessageStatus")
            .or_else(|| param(&p, "SmsStatus"))
            .ok_or_else(|| Refused::BadBody("MessageStatus missing".into()))?;
        let delivered = match status {
            "delivered" => true,
            "undelivered" | "failed" => false,
            // queued, sent, sending …: on its way, nothing to record.
            _ => return Ok(Vec::new()),
        };
        let detail = match param(&p, "ErrorCode") {
            Some(code) => format!("{status} {code}"),
            None => status.to_string(),
        };
        Ok(vec![Event {
            id: format!("{sid}:{status}"),
            what: What::Receipt {
                message: MessageRef::Provider(sid),
                delivered,
                detail,
            },
        }])
    }

    fn answer(&self, _req: &Callback, _outcomes: &[Outcome]) -> Answer {
        // Nothing is sent back to the phone: an acknowledgement is not answered by SMS.
        Answer::xml(r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#)
    }
}

/// Our message in a page of `Messages.json` (newest first), if Twilio has it: an outbound
/// message created since `since` (Unix seconds) with our text, links masked, that did not
/// fail. A page that is full and still within the window may hide older ones: unknown.
fn find_sent(page: &serde_json::Value, body: &str, since: i64) -> Lookup {
    let Some(messages) = page.get("messages").and_then(|m| m.as_array()) else {
        return Lookup::Unknown;
    };
    let ours = without_links(body);
    let mut oldest_in_window = true;
    for m in messages {
        let s = |k: &str| m.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        let created = chrono::DateTime::parse_from_rfc2822(s("date_created"))
            .map(|t| t.timestamp())
            .unwrap_or(i64::MIN);
        if created < since {
            oldest_in_window = false;
            continue;
        }
        if !s("direction").starts_with("outbound") || matches!(s("status"), "failed" | "canceled") {
            continue;
        }
        if without_links(s("body")).trim() == ours.trim() && !s("sid").is_empty() {
            return Lookup::Accepted(s("sid").to_string());
        }
    }
    let more = page.get("next_page_uri").is_some_and(|n| !n.is_null());
    if more && oldest_in_window {
        Lookup::Unknown
    } else {
        Lookup::Absent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes() {
        let body = |code: i64, status: u16| {
            format!(
                r#"{{"code":{code},"message":"m","more_info":"https://www.twilio.com/docs/errors/{code}","status":{status}}}"#
            )
        };
        let ra = Some(Duration::from_secs(7));
        assert!(matches!(
            refusal(400, None, &body(21211, 400)),
            SendError::Permanent { .. }
        ));
        assert!(matches!(
            refusal(400, None, &body(21610, 400)),
            SendError::Permanent { .. }
        ));
        assert!(matches!(
            refusal(400, None, &body(21614, 400)),
            SendError::Permanent { .. }
        ));
        assert!(matches!(
            refusal(400, None, &body(21611, 400)),
            SendError::Capped { .. }
        ));
        assert!(matches!(
            refusal(400, None, &body(30001, 400)),
            SendError::Capped { .. }
        ));
        assert_eq!(
            refusal(429, ra, &body(20429, 429)),
            SendError::Transient {
                reason: "HTTP 429, Twilio 20429: m".into(),
                retry_after: ra
            }
        );
        assert!(matches!(refusal(429, None, ""), SendError::Transient { .. }));
        assert!(matches!(
            refusal(503, None, "<html>"),
            SendError::Transient { .. }
        ));
        assert!(matches!(
            refusal(401, None, &body(20003, 401)),
            SendError::Permanent { .. }
        ));
    }

    #[test]
    fn form_bodies() {
        assert_eq!(
            form("From=%2B8613800000000&Body=%E6%94%B6%E5%88%B0+1&Empty=&Digits=1&Digits=2"),
            [
                ("From".to_string(), "+8613800000000".to_string()),
                ("Body".into(), "收到 1".into()),
                ("Empty".into(), "".into()),
                ("Digits".into(), "1".into()),
                ("Digits".into(), "2".into()),
            ]
        );
    }

    #[test]
    fn links_are_masked() {
        assert_eq!(
            without_links("暴雨：回1确认（码A37）https://jy.example/a/abc.def 转移后回"),
            "暴雨：回1确认（码A37） 转移后回"
        );
        assert_eq!(without_links("x http://a/b"), "x ");
    }

    #[test]
    fn finding_a_lost_send() {
        let since = 1_784_080_000; // 2026-07-15 01:46:40 UTC
        let page = |body: &str, status: &str, created: &str, more: bool| {
            serde_json::json!({
                "messages": [
                    {"sid": "SMother", "body": "别的", "direction": "outbound-api", "status": "sent",
                     "date_created": "Wed, 15 Jul 2026 02:00:05 +0000"},
                    {"sid": "SM1", "body": body, "direction": "outbound-api", "status": status,
                     "date_created": created},
                ],
                "next_page_uri": if more { serde_json::json!("/2010-04-01/…&Page=1") } else { serde_json::Value::Null },
            })
        };
        let ours = "暴雨：回1确认 https://jy.example/a/NEW 转移后回";
        let now = "Wed, 15 Jul 2026 02:00:00 +0000";
        let p = page(
            "暴雨：回1确认 https://jy.example/a/OLD 转移后回",
            "queued",
            now,
            false,
        );
        assert_eq!(find_sent(&p, ours, since), Lookup::Accepted("SM1".into()));
        let p = page(
            "暴雨：回1确认 https://jy.example/a/OLD 转移后回",
            "failed",
            now,
            false,
        );
        assert_eq!(find_sent(&p, ours, since), Lookup::Absent);
        let old = "Wed, 15 Jul 2026 01:00:00 +0000";
        let p = page(
            "暴雨：回1确认 https://jy.example/a/OLD 转移后回",
            "sent",
            old,
            true,
        );
        assert_eq!(find_sent(&p, ours, since), Lookup::Absent);
        let p = page("另一条", "sent", now, true);
        assert_eq!(find_sent(&p, ours, since), Lookup::Unknown);
        assert_eq!(
            find_sent(&serde_json::json!({"code": 20003}), ours, since),
            Lookup::Unknown
        );
    }
}
