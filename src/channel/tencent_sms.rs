//! Tencent Cloud SMS (`tencent-sms`, API 3.0, SendSms 2021-01-11, PROVIDERS.md §3): one
//! TC3-signed JSON POST per message, with the approved template's variables rendered from the
//! facts and our message key as `SessionContext`; the answer read as sent / capped (Tencent's
//! frequency codes) / transient / permanent; PullSmsSendStatusByPhoneNumber for lookups and
//! reconciliation; the status and reply pushes (`/hooks/NAME/TOKEN/status`, `…/reply`), which
//! Tencent does not sign, behind a [`HookGuard`]. Owns the wire format only: what a receipt or
//! a reply does is `answer::inbound`'s.

use super::{clip, request_failed, without_url};
use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::event::{Answer, Callback, Event, Lookup, MessageRef, Outcome, Refused, Unconfirmed, What};
use super::hook_guard::HookGuard;
use super::tc3;
use super::template::{cut, Params};
use super::{Channel, Outgoing, SendError};
use crate::clock::Clock;
use crate::config;

pub const VERSION: &str = "2021-01-11";
pub const CONTENT_TYPE: &str = "application/json; charset=utf-8";
/// Signature + fixed text + variables, counted in characters (tencentcloud.com 382/40659).
const MESSAGE_LIMIT: usize = 500;
/// How far back a lookup asks for a send whose answer was lost (the pull API serves 7 days).
const LOOKBACK_SECS: i64 = 6 * 3600;
/// PullSmsSendStatusByPhoneNumber's largest page, and how many pages one question reads.
const PAGE: usize = 100;
const PAGES: usize = 5;

pub struct TencentSms {
    endpoint: String,
    host: String,
    region: String,
    secret_id: SecretString,
    secret_key: SecretString,
    sdk_app_id: String,
    sign_name: String,
    template_id: String,
    params: Params,
    param_limit: usize,
    guard: HookGuard,
    client: reqwest::Client,
    clock: Clock,
}

impl TencentSms {
    /// `name` is the gateway's name under `[gateways]`; errors name the key.
    pub fn new(name: &str, c: &config::TencentSms, clock: Clock) -> Result<TencentSms> {
        let key = format!("gateways.{name}");
        for (field, v) in [
            ("region", &c.region),
            ("sdk_app_id", &c.sdk_app_id),
            ("sign_name", &c.sign_name),
            ("template_id", &c.template_id),
        ] {
            if v.trim().is_empty() {
                bail!("{key}.{field}: missing");
            }
        }
        if c.param_limit == 0 {
            bail!("{key}.param_limit: must be at least 1");
        }
        let url = reqwest::Url::parse(&c.endpoint)
            .with_context(|| format!("{key}.endpoint: {:?} is not a URL", c.endpoint))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => bail!("{key}.endpoint: {:?} has no host", c.endpoint),
        };
        let items = c
            .template_params
            .iter()
            .enumerate()
            .map(|(i, e)| (i.to_string(), e.clone()))
            .collect();
        let params = Params::compile(&format!("{key}.template_params"), items)?;
        let client = reqwest::Client::builder()
            .timeout(c.timeout)
            .connect_timeout(c.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(c.limits.concurrency.max(1))
            .build()?;
        Ok(TencentSms {
            endpoint: c.endpoint.clone(),
            host,
            region: c.region.clone(),
            secret_id: env_secret(&key, "secret_id_env", &c.secret_id_env)?,
            secret_key: env_secret(&key, "secret_key_env", &c.secret_key_env)?,
            sdk_app_id: c.sdk_app_id.clone(),
            sign_name: c.sign_name.clone(),
            template_id: c.template_id.clone(),
            params,
            param_limit: c.param_limit,
            guard: HookGuard::new(&key, c.hook_token_env.as_deref(), &c.allow_from)?,
            client,
            clock,
        })
    }

    /// The template variables for a message: each cut to `param_limit`, and all of them to
    /// what the 500-character message leaves after the signature (`【…】`, added by Tencent).
    pub fn template_params(&self, msg: &Outgoing) -> Vec<String> {
        let mut left = MESSAGE_LIMIT.saturating_sub(self.sign_name.chars().count() + 2);
        self.params
            .render(msg, self.param_limit)
            .into_iter()
            .map(|(_, v)| {
                let v = cut(&v, left);
                left -= v.chars().count();
                v
            })
            .collect()
    }

    /// One signed API call; the HTTP status and body, or the transport error.
    async fn call(&self, action: &str, body: Vec<u8>) -> Result<(u16, String), reqwest::Error> {
        let ts = self.clock.wall_secs();
        let auth = tc3::Request {
            host: &self.host,
            content_type: CONTENT_TYPE,
            action: Some(action),
            payload: &body,
            service: "sms",
            timestamp: ts,
        }
        .authorization(self.secret_id.expose_secret(), self.secret_key.expose_secret());
        let resp = self
            .client
            .post(&self.endpoint)
            .header("host", &self.host)
            .header("content-type", CONTENT_TYPE)
            .header("x-tc-action", action)
            .header("x-tc-version", VERSION)
            .header("x-tc-timestamp", ts.to_string())
            .header("x-tc-region", &self.region)
            .header("authorization", auth)
            .body(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await?))
    }

    /// The delivery reports Tencent holds for one number since `begin` (Unix seconds).
    async fn pull(&self, phone: &str, begin: i64) -> Result<Vec<PullStatus>, String> {
        let mut all = Vec::new();
        for page in 0..PAGES {
            let body = serde_json::to_vec(&Pull {
                begin_time: begin,
                end_time: self.clock.now_secs(),
                offset: page * PAGE,
                limit: PAGE,
                phone_number: phone,
                sms_sdk_app_id: &self.sdk_app_id,
            })
            .map_err(|e| e.to_string())?;
            let (status, text) = self
                .call("PullSmsSendStatusByPhoneNumber", body)
                .await
                .map_err(without_url)?;
            let r = read(&text).map_err(|_| format!("HTTP {status}: {}", clip(&text)))?;
            if let Some(e) = r.error {
                return Err(format!("{}: {}", e.code, clip(&e.message)));
            }
            let n = r.pull_sms_send_status_set.len();
            all.extend(r.pull_sms_send_status_set);
            if n < PAGE {
                break;
            }
        }
        Ok(all)
    }
}

fn env_secret(key: &str, field: &str, env: &str) -> Result<SecretString> {
    match std::env::var(env) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string().into()),
        _ => bail!("{key}.{field}: the environment variable {env} is not set"),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SendSms<'a> {
    phone_number_set: [&'a str; 1],
    sms_sdk_app_id: &'a str,
    sign_name: &'a str,
    template_id: &'a str,
    template_param_set: Vec<String>,
    session_context: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Pull<'a> {
    begin_time: i64,
    end_time: i64,
    offset: usize,
    limit: usize,
    phone_number: &'a str,
    sms_sdk_app_id: &'a str,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "Response")]
    response: Response,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Response {
    error: Option<ApiError>,
    send_status_set: Vec<SendStatus>,
    pull_sms_send_status_set: Vec<PullStatus>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiError {
    code: String,
    message: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct SendStatus {
    serial_no: String,
    code: String,
    message: String,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "PascalCase", default)]
struct PullStatus {
    serial_no: String,
    report_status: String,
    description: String,
    /// Echoed when the send carried one (not every account gets it back).
    session_context: String,
}

fn read(text: &str) -> Result<Response, serde_json::Error> {
    serde_json::from_str::<Envelope>(text).map(|e| e.response)
}

/// What a Tencent error code means for the send (PROVIDERS.md §3.5; cloud.tencent.com
/// /document/api/382/55981 and /382/59177). Pure.
pub fn classify(code: &str, message: &str) -> SendError {
    let reason = format!("{code}: {}", clip(message));
    if code == "LimitExceeded.PhoneNumberCountLimit" {
        // More than 200 numbers in one request: ours never is; retrying cannot help.
        SendError::Permanent { reason }
    } else if code == "LimitExceeded" || code.starts_with("LimitExceeded.") {
        // PhoneNumberDailyLimit, PhoneNumberThirtySecondLimit, PhoneNumberOneHourLimit,
        // PhoneNumberSameContentDailyLimit, DailyLimit, DeliveryFrequencyLimit, App*Limit …:
        // the provider's cap for this number or account. Hammering makes it worse.
        SendError::Capped { reason }
    } else if code.starts_with("RequestLimitExceeded") {
        // The API's own requests-per-second limit: later, not elsewhere.
        SendError::Transient {
            reason,
            retry_after: Some(Duration::from_secs(1)),
        }
    } else if code == "InternalError.Timeout" {
        // 请求下发短信超时: Tencent timed out towards the carrier, it may have gone out.
        SendError::Unanswered { reason }
    } else if code.starts_with("InternalError")
        || code == "ResourceUnavailable"
        // Our X-TC-Timestamp more than 5 minutes off Tencent's (a step of the machine's clock
        // in flight): signed afresh, the next try goes through.
        || code == "AuthFailure.SignatureExpire"
    {
        SendError::Transient {
            reason,
            retry_after: None,
        }
    } else {
        // AuthFailure.*, InvalidParameter*, FailedOperation.* (template, signature, blacklist,
        // insufficient balance), UnauthorizedOperation.*, MissingParameter …
        SendError::Permanent { reason }
    }
}

/// The answer to a SendSms request for one number. Pure.
fn outcome(status: u16, text: &str) -> Result<String, SendError> {
    let r = match read(text) {
        Ok(r) => r,
        Err(_) if status >= 500 => {
            return Err(SendError::Transient {
                reason: format!("HTTP {status}: {}", clip(text)),
                retry_after: None,
            })
        }
        Err(e) => {
            return Err(SendError::Permanent {
                reason: format!("HTTP {status}: unreadable answer ({e}): {}", clip(text)),
            })
        }
    };
    if let Some(e) = r.error {
        return Err(classify(&e.code, &e.message));
    }
    match r.send_status_set.first() {
        Some(s) if s.code == "Ok" => Ok(s.serial_no.clone()),
        Some(s) => Err(classify(&s.code, &s.message)),
        None if status >= 500 => Err(SendError::Transient {
            reason: format!("HTTP {status}"),
            retry_after: None,
        }),
        None => Err(SendError::Permanent {
            reason: format!("HTTP {status}: no SendStatusSet in the answer"),
        }),
    }
}

/// A report's id: the same for its push and its pull, distinct per status.
fn report_id(serial: &str, status: &str) -> String {
    format!("{serial}:{status}")
}

impl Channel for TencentSms {
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<String, SendError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(&SendSms {
                phone_number_set: [&msg.to],
                sms_sdk_app_id: &self.sdk_app_id,
                sign_name: &self.sign_name,
                template_id: &self.template_id,
                template_param_set: self.template_params(msg),
                session_context: &msg.key,
            })
            .map_err(|e| SendError::Permanent {
                reason: e.to_string(),
            })?;
            match self.call("SendSms", body).await {
                Ok((status, text)) => outcome(status, &text),
                Err(e) => Err(request_failed(e)),
            }
        })
    }

    fn lookup<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Lookup> {
        Box::pin(async move {
            let begin = self.clock.now_secs() - LOOKBACK_SECS;
            match self.pull(&msg.to, begin).await {
                Ok(reports) => match reports.iter().find(|r| r.session_context == msg.key) {
                    Some(r) => Lookup::Accepted(r.serial_no.clone()),
                    // The pull lists only sends the carrier has reported on, and a report can
                    // lag by minutes: no record does not prove the send absent.
                    None => Lookup::Unknown,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "tencent-sms: status pull for a lookup failed");
                    Lookup::Failed(format!("PullSmsSendStatusByPhoneNumber: {e}"))
                }
            }
        })
    }

    fn callback(&self, req: &Callback) -> Result<Vec<Event>, Refused> {
        match self.guard.check(req)? {
            "status" => {
                let reports: Vec<StatusPush> = body(&req.body)?;
                Ok(reports
                    .into_iter()
                    .filter(|r| !r.sid.is_empty())
                    .map(|r| Event {
                        id: report_id(&r.sid, &r.report_status),
                        what: What::Receipt {
                            delivered: r.report_status == "SUCCESS",
                            detail: clip(format!("{} {}", r.errmsg, r.description).trim()),
                            message: MessageRef::Provider(r.sid),
                        },
                    })
                    .collect())
            }
            "reply" => {
                let r: ReplyPush = body(&req.body)?;
                if r.mobile.trim().is_empty() {
                    return Err(Refused::BadBody("reply: no mobile".into()));
                }
                let from = phone(&r.nationcode, &r.mobile);
                use sha2::Digest;
                let digest = hex::encode(sha2::Sha256::digest(r.text.as_bytes()));
                // Tencent gives a reply no id: who, when and what is the report.
                let id = format!("reply:{from}:{}:{}", r.time, &digest[..16]);
                Ok(vec![Event {
                    id,
                    what: What::Reply { from, text: r.text },
                }])
            }
            _ => Err(Refused::NotFound),
        }
    }

    fn answer(&self, _req: &Callback, _outcomes: &[Outcome]) -> Answer {
        // Anything else makes Tencent push the same report again (twice more).
        Answer::json(200, serde_json::json!({"result": 0, "errmsg": "OK"}))
    }

    fn reconcile<'a>(&'a self, sends: &'a [Unconfirmed]) -> BoxFuture<'a, Vec<Event>> {
        Box::pin(async move {
            let mut by_phone: HashMap<&str, Vec<&Unconfirmed>> = HashMap::new();
            for s in sends {
                by_phone.entry(s.to.as_str()).or_default().push(s);
            }
            let mut events = Vec::new();
            for (phone, sends) in by_phone {
                let begin = sends.iter().map(|s| s.sent_at / 1000).min().unwrap_or(0) - 60;
                let reports = match self.pull(phone, begin).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "tencent-sms: status pull failed");
                        continue;
                    }
                };
                for s in sends {
                    events.extend(reconciled(s, &reports));
                }
            }
            events
        })
    }
}

/// The receipt Tencent holds for one unconfirmed send, matched by our key when the report
/// echoes it, else by the serial number SendSms returned.
fn reconciled(s: &Unconfirmed, reports: &[PullStatus]) -> Option<Event> {
    let (r, message) = reports
        .iter()
        .filter(|r| matches!(r.report_status.as_str(), "SUCCESS" | "FAIL"))
        .find_map(|r| {
            if !r.session_context.is_empty() && r.session_context == s.key {
                Some((r, MessageRef::Key(s.key.clone())))
            } else if s.provider_id.as_deref() == Some(r.serial_no.as_str()) && !r.serial_no.is_empty() {
                Some((r, MessageRef::Provider(r.serial_no.clone())))
            } else {
                None
            }
        })?;
    Some(Event {
        id: report_id(&r.serial_no, &r.report_status),
        what: What::Receipt {
            message,
            delivered: r.report_status == "SUCCESS",
            detail: clip(&r.description),
        },
    })
}

#[derive(Deserialize)]
struct StatusPush {
    #[serde(default)]
    sid: String,
    #[serde(default)]
    report_status: String,
    #[serde(default)]
    errmsg: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
struct ReplyPush {
    mobile: String,
    #[serde(default)]
    nationcode: String,
    #[serde(default)]
    text: String,
    /// Unix seconds, a number (some copies of the doc show a string).
    #[serde(default)]
    time: serde_json::Value,
}

/// `+86` + `13800000000`; a number that already has its `+` is kept.
fn phone(nationcode: &str, mobile: &str) -> String {
    let mobile = mobile.trim();
    if mobile.starts_with('+') {
        return mobile.to_string();
    }
    let cc = nationcode.trim().trim_start_matches('+');
    format!("+{}{mobile}", if cc.is_empty() { "86" } else { cc })
}

fn body<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, Refused> {
    serde_json::from_slice(b).map_err(|e| Refused::BadBody(format!("body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequency_codes_are_capped_and_others_read_by_kind() {
        for code in [
            "LimitExceeded.PhoneNumberDailyLimit",
            "LimitExceeded.PhoneNumberThirtySecondLimit",
            "LimitExceeded.PhoneNumberOneHourLimit",
            "LimitExceeded.PhoneNumberSameContentDailyLimit",
            "LimitExceeded.DailyLimit",
            "LimitExceeded.DeliveryFrequencyLimit",
        ] {
            assert!(matches!(classify(code, "x"), SendError::Capped { .. }), "{code}");
        }
        assert!(matches!(
            classify("AuthFailure.SignatureFailure", "x"),
            SendError::Permanent { .. }
        ));
        assert!(matches!(
            classify("InvalidParameterValue.IncorrectPhoneNumber", "x"),
            SendError::Permanent { .. }
        ));
        assert!(matches!(
            classify("LimitExceeded.PhoneNumberCountLimit", "x"),
            SendError::Permanent { .. }
        ));
        assert!(matches!(
            classify("InternalError.OtherError", "x"),
            SendError::Transient { .. }
        ));
        assert!(matches!(
            classify("RequestLimitExceeded", "x"),
            SendError::Transient { .. }
        ));
        assert!(matches!(
            classify("InternalError.Timeout", "x"),
            SendError::Unanswered { .. }
        ));
        assert!(matches!(
            classify("AuthFailure.SignatureExpire", "x"),
            SendError::Transient { .. }
        ));
    }

    #[test]
    fn send_answers_per_number_and_api_errors() {
        let ok = r#"{"Response":{"SendStatusSet":[{"SerialNo":"5000:1045710669157053657849499619","PhoneNumber":"+8618511122233","Fee":1,"SessionContext":"c1-j1","Code":"Ok","Message":"send success","IsoCode":"CN"}],"RequestId":"a0aabda6-cf91-4f3e-a81f-9198114a2279"}}"#;
        assert_eq!(outcome(200, ok), Ok("5000:1045710669157053657849499619".into()));
        let capped = r#"{"Response":{"SendStatusSet":[{"SerialNo":"","PhoneNumber":"+8618511122233","Fee":0,"SessionContext":"c1-j1","Code":"LimitExceeded.PhoneNumberDailyLimit","Message":"the number of sms messages sent from a single mobile number every day exceeds the upper limit","IsoCode":"CN"}],"RequestId":"x"}}"#;
        assert!(matches!(outcome(200, capped), Err(SendError::Capped { .. })));
        let auth = r#"{"Response":{"Error":{"Code":"AuthFailure.SignatureFailure","Message":"The provided credentials could not be validated. Please check your signature is correct."},"RequestId":"ed93f3cb-f35e-473f-b9f3-0d451b8b79c6"}}"#;
        assert!(matches!(outcome(200, auth), Err(SendError::Permanent { .. })));
        assert!(matches!(
            outcome(502, "<html>bad gateway</html>"),
            Err(SendError::Transient { .. })
        ));
    }

    #[test]
    fn reply_numbers() {
        assert_eq!(phone("86", "13800000000"), "+8613800000000");
        assert_eq!(phone("", "13800000000"), "+8613800000000");
        assert_eq!(phone("852", "61234567"), "+85261234567");
        assert_eq!(phone("86", "+8613800000000"), "+8613800000000");
    }

    #[test]
    fn reconciled_by_key_or_serial() {
        let reports = vec![
            PullStatus {
                serial_no: "s1".into(),
                report_status: "SUCCESS".into(),
                description: "用户接收成功".into(),
                session_context: String::new(),
            },
            PullStatus {
                serial_no: "s2".into(),
                report_status: "FAIL".into(),
                description: "空号".into(),
                session_context: "c2-j2".into(),
            },
        ];
        let u = |key: &str, id: Option<&str>| Unconfirmed {
            key: key.into(),
            provider_id: id.map(String::from),
            to: "+8613800000000".into(),
            sent_at: 0,
        };
        let e = reconciled(&u("c1-j1", Some("s1")), &reports).unwrap();
        assert_eq!(e.id, "s1:SUCCESS");
        assert!(
            matches!(e.what, What::Receipt { delivered: true, message: MessageRef::Provider(ref p), .. } if p == "s1")
        );
        let e = reconciled(&u("c2-j2", None), &reports).unwrap();
        assert!(
            matches!(e.what, What::Receipt { delivered: false, message: MessageRef::Key(ref k), .. } if k == "c2-j2")
        );
        assert!(reconciled(&u("c3-j3", Some("s9")), &reports).is_none());
    }
}
