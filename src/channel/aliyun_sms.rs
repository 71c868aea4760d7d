//! `aliyun-sms`: Aliyun SMS (dysmsapi 2017-05-25) SendSms signed with V3 (`acs3`), the business
//! parameters in the query and an empty body as the official SDK sends them; QuerySendDetails
//! for a send whose answer was lost (`lookup`) and for receipts that never came (`reconcile`);
//! the SmsReport / SmsUp HTTP pushes, which Aliyun signs with nothing, behind [`HookGuard`].
//! Also the signed RPC client the voice adapter shares ([`Rpc`]) and the reading of Aliyun's
//! error codes into [`SendError`]. Owns the wire format only: what a receipt or reply does is
//! `answer::inbound`'s.

use super::request_failed;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, FixedOffset, Utc};
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use super::acs3;
use super::event::{Answer, Callback, Event, Lookup, MessageRef, Outcome, Refused, Unconfirmed, What};
use super::hook_guard::HookGuard;
use super::template::Params;
use super::{Channel, Outgoing, SendError};
use crate::clock::Clock;
use crate::config;

/// Aliyun's default limit per template variable (PROVIDERS.md §1.6).
pub const VARIABLE_LIMIT: usize = 35;
const SMS_VERSION: &str = "2017-05-25";

/// Signed RPC-style calls to one Aliyun product endpoint (POST `/`, parameters in the query,
/// V3 signature).
pub(super) struct Rpc {
    url: reqwest::Url,
    /// `host[:port]` exactly as the request carries it (it is signed).
    host: String,
    version: &'static str,
    key_id: String,
    secret: SecretString,
    client: reqwest::Client,
    clock: Clock,
}

/// The credentials of a gateway, read from the environment variables its config names.
pub(super) fn credential(name: &str, field: &str, env: &str) -> Result<SecretString> {
    match std::env::var(env) {
        Ok(v) if !v.trim().is_empty() => Ok(SecretString::from(v.trim().to_string())),
        _ => bail!("gateways.{name}.{field}: {env} is not set"),
    }
}

/// A required text key that must not be empty.
pub(super) fn required(name: &str, field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        bail!("gateways.{name}.{field}: missing");
    }
    Ok(())
}

impl Rpc {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        name: &str,
        endpoint: &str,
        version: &'static str,
        key_id_env: &str,
        secret_env: &str,
        timeout: Duration,
        concurrency: usize,
        clock: Clock,
    ) -> Result<Rpc> {
        let url = reqwest::Url::parse(endpoint)
            .with_context(|| format!("gateways.{name}.endpoint: {endpoint:?} is not a URL"))?;
        let Some(h) = url.host_str() else {
            bail!("gateways.{name}.endpoint: {endpoint:?} has no host");
        };
        let host = match url.port() {
            Some(p) => format!("{h}:{p}"),
            None => h.to_string(),
        };
        let key_id = credential(name, "access_key_id_env", key_id_env)?
            .expose_secret()
            .to_string();
        let secret = credential(name, "access_key_secret_env", secret_env)?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(concurrency.max(1))
            .build()?;
        Ok(Rpc {
            url,
            host,
            version,
            key_id,
            secret,
            client,
            clock,
        })
    }

    pub(super) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// One call: the HTTP status and the JSON body (`Null` when it is not JSON), or the
    /// transport failure read as a send error (`channel::request_failed`).
    pub(super) async fn call(
        &self,
        action: &str,
        query: Vec<(String, String)>,
    ) -> Result<(u16, Value), SendError> {
        let date = self.clock.wall().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let nonce = format!("{:032x}", rand::random::<u128>());
        let headers = acs3::rpc_headers(
            &acs3::RpcCall {
                host: &self.host,
                action,
                version: self.version,
                date: &date,
                nonce: &nonce,
                query: &query,
            },
            &self.key_id,
            self.secret.expose_secret(),
        );
        let mut url = self.url.clone();
        url.set_path("/");
        // The query as signed: sorted and RFC 3986-encoded, so the bytes sent are the bytes signed.
        url.set_query(Some(&acs3::canonical_query(&query)));
        let mut req = self.client.post(url).body(Vec::new());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.map_err(request_failed)?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(request_failed)?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

/// `Code` of an answer, `""` when there is none.
pub(super) fn code(body: &Value) -> &str {
    body.get("Code").and_then(Value::as_str).unwrap_or("")
}

/// Reads an answer that is not `Code == "OK"`: the provider's flow control is `Capped` (fail
/// over, do not hammer), its own trouble and 429/5xx `Transient`, anything else (bad number,
/// template, signature, credentials) `Permanent`.
pub(super) fn failure(status: u16, body: &Value) -> SendError {
    let code = code(body);
    let message: String = body
        .get("Message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    let reason = format!("HTTP {status} {code}: {message}");
    if is_flow_control(code) {
        SendError::Capped { reason }
    } else if status == 429
        || status >= 500
        || code.starts_with("isp.")
        || code.starts_with("Throttling")
        || code == "ServiceUnavailable"
        || code == "InternalError"
        // Our timestamp more than 15 minutes off Aliyun's (a step of the machine's clock in
        // flight), or a nonce seen before: signed afresh, the next try goes through.
        || code == "InvalidTimeStamp.Expired"
        || code == "SignatureNonceUsed"
    {
        SendError::Transient {
            reason,
            retry_after: None,
        }
    } else {
        SendError::Permanent { reason }
    }
}

/// Per-number and per-account flow control (`isv.BUSINESS_LIMIT_CONTROL`, `isv.DAY_LIMIT_CONTROL`
/// …) and the voice platform's "over concurrency" (200121).
fn is_flow_control(code: &str) -> bool {
    code.ends_with("LIMIT_CONTROL") || code == "200121" || code.contains("CONCURRENCY")
}

/// A number as Aliyun takes it: domestic without `+86`, international as country code + number.
pub(super) fn national(to: &str) -> String {
    let t = to.trim();
    t.strip_prefix("+86")
        .or_else(|| t.strip_prefix('+'))
        .unwrap_or(t)
        .to_string()
}

pub(super) fn beijing(t: DateTime<Utc>) -> DateTime<FixedOffset> {
    t.with_timezone(&FixedOffset::east_opt(8 * 3600).expect("UTC+8"))
}

pub(super) fn params_of(map: &std::collections::BTreeMap<String, String>) -> Vec<(String, String)> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub struct AliyunSms {
    rpc: Rpc,
    sign_name: String,
    template_code: String,
    params: Params,
    guard: HookGuard,
}

impl AliyunSms {
    pub fn new(name: &str, c: &config::AliyunSms, clock: Clock) -> Result<AliyunSms> {
        required(name, "sign_name", &c.sign_name)?;
        required(name, "template_code", &c.template_code)?;
        let params = Params::compile(
            &format!("gateways.{name}.template_params"),
            params_of(&c.template_params),
        )?;
        let guard = HookGuard::new(
            &format!("gateways.{name}"),
            c.hook_token_env.as_deref(),
            &c.allow_from,
        )?;
        let rpc = Rpc::new(
            name,
            &c.endpoint,
            SMS_VERSION,
            &c.access_key_id_env,
            &c.access_key_secret_env,
            c.timeout,
            c.limits.concurrency,
            clock,
        )?;
        Ok(AliyunSms {
            rpc,
            sign_name: c.sign_name.clone(),
            template_code: c.template_code.clone(),
            params,
            guard,
        })
    }

    /// The SendSms parameters for a message (pure but for the template rendering).
    fn send_params(&self, msg: &Outgoing) -> Vec<(String, String)> {
        let mut q = vec![
            ("PhoneNumbers".to_string(), national(&msg.to)),
            ("SignName".to_string(), self.sign_name.clone()),
            ("TemplateCode".to_string(), self.template_code.clone()),
            ("OutId".to_string(), msg.key.clone()),
        ];
        if !self.params.is_empty() {
            let vars: serde_json::Map<String, Value> = self
                .params
                .render(msg, VARIABLE_LIMIT)
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            q.push(("TemplateParam".to_string(), Value::Object(vars).to_string()));
        }
        q
    }

    /// The details QuerySendDetails has for a number on a day (Beijing), every page.
    async fn details(
        &self,
        to: &str,
        day: DateTime<FixedOffset>,
        biz_id: Option<&str>,
    ) -> Result<Vec<Detail>, String> {
        let mut all = Vec::new();
        for page in 1..=4 {
            let mut q = vec![
                ("PhoneNumber".to_string(), national(to)),
                ("SendDate".to_string(), day.format("%Y%m%d").to_string()),
                ("PageSize".to_string(), "50".to_string()),
                ("CurrentPage".to_string(), page.to_string()),
            ];
            if let Some(b) = biz_id.filter(|b| !b.is_empty()) {
                q.push(("BizId".to_string(), b.to_string()));
            }
            let (status, body) = match self.rpc.call("QuerySendDetails", q).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "aliyun QuerySendDetails failed");
                    return Err(format!("QuerySendDetails: {e}"));
                }
            };
            if status != 200 || code(&body) != "OK" {
                let e = failure(status, &body);
                tracing::warn!(error = %e, "aliyun QuerySendDetails refused");
                return Err(format!("QuerySendDetails: {e}"));
            }
            let list = body
                .pointer("/SmsSendDetailDTOs/SmsSendDetailDTO")
                .cloned()
                .unwrap_or(Value::Array(Vec::new()));
            let got: Vec<Detail> = serde_json::from_value(list).unwrap_or_default();
            let n = got.len();
            all.extend(got);
            let total = body.get("TotalCount").and_then(as_i64).unwrap_or(0);
            if n < 50 || all.len() as i64 >= total {
                break;
            }
        }
        Ok(all)
    }

    /// The details for a send at `at` (the day before too, just after midnight in Beijing).
    async fn details_around(
        &self,
        to: &str,
        at: DateTime<Utc>,
        biz_id: Option<&str>,
    ) -> Result<Vec<Detail>, String> {
        let day = beijing(at);
        let mut all = self.details(to, day, biz_id).await?;
        if chrono::Timelike::hour(&day) == 0 {
            all.extend(self.details(to, day - chrono::Duration::days(1), biz_id).await?);
        }
        Ok(all)
    }
}

/// One row of QuerySendDetails.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Detail {
    out_id: Option<String>,
    /// Not in every documented answer; kept when present.
    biz_id: Option<String>,
    #[serde(deserialize_with = "int_or_string")]
    send_status: i64,
    err_code: Option<String>,
}

fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn int_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(as_i64(&v).unwrap_or(0))
}

/// A receipt's id: the send (our key when echoed, else the BizId) and what became of it, the
/// same whether pushed or found by reconciliation, so that the second is a replay.
fn receipt_id(reference: &str, delivered: bool) -> String {
    format!(
        "sms-report:{reference}:{}",
        if delivered { "delivered" } else { "failed" }
    )
}

impl Channel for AliyunSms {
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<String, SendError>> {
        Box::pin(async move {
            let (status, body) = self.rpc.call("SendSms", self.send_params(msg)).await?;
            if status == 200 && code(&body) == "OK" {
                Ok(body
                    .get("BizId")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string())
            } else {
                Err(failure(status, &body))
            }
        })
    }

    fn lookup<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Lookup> {
        Box::pin(async move {
            let details = match self.details_around(&msg.to, self.rpc.clock().now(), None).await {
                Ok(d) => d,
                Err(e) => return Lookup::Failed(e),
            };
            match details
                .iter()
                .find(|d| d.out_id.as_deref() == Some(msg.key.as_str()))
            {
                // QuerySendDetails does not always carry the BizId: our key is then the
                // reference, and receipts echo it as `out_id`.
                Some(d) => Lookup::Accepted(
                    d.biz_id
                        .clone()
                        .filter(|b| !b.is_empty())
                        .unwrap_or_else(|| msg.key.clone()),
                ),
                None => Lookup::Absent,
            }
        })
    }

    fn reconcile<'a>(&'a self, sends: &'a [Unconfirmed]) -> BoxFuture<'a, Vec<Event>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for s in sends {
                let at = DateTime::<Utc>::from_timestamp_millis(s.sent_at)
                    .unwrap_or_else(|| self.rpc.clock().now());
                let biz = s.provider_id.as_deref().filter(|b| *b != s.key);
                let Ok(details) = self.details_around(&s.to, at, biz).await else {
                    continue;
                };
                let found = details
                    .iter()
                    .find(|d| d.out_id.as_deref() == Some(s.key.as_str()))
                    .or_else(|| match (biz, details.as_slice()) {
                        // Asked by BizId: the one row is that send even without an OutId.
                        (Some(_), [only]) if only.out_id.is_none() => Some(only),
                        _ => None,
                    });
                let Some(d) = found else { continue };
                // 1 = waiting for the receipt, 2 = failed, 3 = delivered.
                let delivered = match d.send_status {
                    3 => true,
                    2 => false,
                    _ => continue,
                };
                out.push(Event {
                    id: receipt_id(&s.key, delivered),
                    what: What::Receipt {
                        message: MessageRef::Key(s.key.clone()),
                        delivered,
                        detail: d.err_code.clone().unwrap_or_default(),
                    },
                });
            }
            out
        })
    }

    fn callback(&self, req: &Callback) -> Result<Vec<Event>, Refused> {
        match self.guard.check(req)? {
            "sms-report" => Ok(items::<Report>(&req.body)?
                .into_iter()
                .map(Report::event)
                .collect()),
            "sms-up" => Ok(items::<Up>(&req.body)?.into_iter().map(Up::event).collect()),
            _ => Err(Refused::NotFound),
        }
    }

    fn answer(&self, _req: &Callback, _outcomes: &[Outcome]) -> Answer {
        ack()
    }
}

/// What Aliyun expects back from every push (only that `code` is a number is checked).
pub(super) fn ack() -> Answer {
    Answer::json(200, serde_json::json!({"code": 0, "msg": "接收成功"}))
}

/// A push body: a JSON array of reports (one object is read as an array of one).
pub(super) fn items<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Vec<T>, Refused> {
    let v: Value = serde_json::from_slice(body).map_err(|e| Refused::BadBody(format!("body: {e}")))?;
    let v = match v {
        Value::Array(_) => v,
        other => Value::Array(vec![other]),
    };
    serde_json::from_value(v).map_err(|e| Refused::BadBody(format!("body: {e}")))
}

/// A string, or a number read as its text (`sequence_id`, `status_code` drift between doc
/// versions).
pub(super) fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// SmsReport.
#[derive(serde::Deserialize)]
struct Report {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    err_code: String,
    #[serde(default, deserialize_with = "text")]
    biz_id: String,
    #[serde(default)]
    out_id: Option<String>,
}

impl Report {
    fn event(self) -> Event {
        let message = match self.out_id.filter(|o| !o.is_empty()) {
            Some(k) => MessageRef::Key(k),
            None => MessageRef::Provider(self.biz_id.clone()),
        };
        let reference = match &message {
            MessageRef::Key(k) | MessageRef::Provider(k) => k.clone(),
        };
        Event {
            id: receipt_id(&reference, self.success),
            what: What::Receipt {
                message,
                delivered: self.success,
                detail: self.err_code,
            },
        }
    }
}

/// SmsUp (`sign_name` appears only in the older doc; `sequence_id` is a string or a number).
#[derive(serde::Deserialize)]
struct Up {
    phone_number: String,
    content: String,
    #[serde(default, deserialize_with = "text")]
    sequence_id: String,
    #[serde(default)]
    send_time: String,
    #[serde(default)]
    #[allow(dead_code)]
    sign_name: Option<String>,
}

impl Up {
    fn event(self) -> Event {
        let id = if self.sequence_id.is_empty() {
            // No id given: what was said, by whom and when is the report.
            format!(
                "sms-up:{}",
                &acs3::sha256_hex(
                    format!("{}\n{}\n{}", self.phone_number, self.send_time, self.content).as_bytes()
                )[..32]
            )
        } else {
            format!("sms-up:{}", self.sequence_id)
        };
        Event {
            id,
            what: What::Reply {
                from: self.phone_number,
                text: self.content,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_read_as_capped_transient_or_permanent() {
        let b = |c: &str| serde_json::json!({"Code": c, "Message": "m"});
        assert!(matches!(
            failure(200, &b("isv.BUSINESS_LIMIT_CONTROL")),
            SendError::Capped { .. }
        ));
        assert!(matches!(
            failure(200, &b("isv.DAY_LIMIT_CONTROL")),
            SendError::Capped { .. }
        ));
        assert!(matches!(failure(200, &b("200121")), SendError::Capped { .. }));
        assert!(matches!(
            failure(200, &b("isv.MOBILE_NUMBER_ILLEGAL")),
            SendError::Permanent { .. }
        ));
        assert!(matches!(
            failure(400, &b("isv.SMS_TEMPLATE_ILLEGAL")),
            SendError::Permanent { .. }
        ));
        assert!(matches!(
            failure(200, &b("isp.SYSTEM_ERROR")),
            SendError::Transient { .. }
        ));
        assert!(matches!(failure(503, &Value::Null), SendError::Transient { .. }));
        assert!(matches!(
            failure(429, &b("Throttling.User")),
            SendError::Transient { .. }
        ));
        for code in ["InvalidTimeStamp.Expired", "SignatureNonceUsed"] {
            assert!(
                matches!(failure(400, &b(code)), SendError::Transient { .. }),
                "{code}"
            );
        }
        assert!(matches!(
            failure(400, &b("SignatureDoesNotMatch")),
            SendError::Permanent { .. }
        ));
    }

    #[test]
    fn numbers_lose_their_plus_86() {
        assert_eq!(national("+8613800000000"), "13800000000");
        assert_eq!(national("+85251234567"), "85251234567");
        assert_eq!(national("13800000000"), "13800000000");
    }

    #[test]
    fn sms_report_and_sms_up_bodies() {
        let r: Vec<Report> = items(
            r#"[{"phone_number":"13811111111","send_time":"2017-01-01 00:00:00","report_time":"2017-01-01 00:00:00",
  "success":true,"err_code":"DELIVERED","err_msg":"用户接收成功","sms_size":"1",
  "biz_id":"12345","out_id":"c1-j2"},{"success":false,"err_code":"MK:0001","biz_id":"678"}]"#
                .as_bytes(),
        )
        .unwrap();
        let e: Vec<Event> = r.into_iter().map(Report::event).collect();
        assert_eq!(e[0].id, "sms-report:c1-j2:delivered");
        assert_eq!(
            e[0].what,
            What::Receipt {
                message: MessageRef::Key("c1-j2".into()),
                delivered: true,
                detail: "DELIVERED".into()
            }
        );
        assert_eq!(
            e[1].what,
            What::Receipt {
                message: MessageRef::Provider("678".into()),
                delivered: false,
                detail: "MK:0001".into()
            }
        );
        let u: Vec<Up> = items(
            r#"[{"phone_number":"13811111111","content":"收到","send_time":"2017-09-01 00:00:00","dest_code":"1234","sequence_id":1234567890,"sign_name":"防汛"},
                {"phone_number":"13811111112","content":"1","sequence_id":"99"}]"#
                .as_bytes(),
        )
        .unwrap();
        let e: Vec<Event> = u.into_iter().map(Up::event).collect();
        assert_eq!(e[0].id, "sms-up:1234567890");
        assert_eq!(
            e[0].what,
            What::Reply {
                from: "13811111111".into(),
                text: "收到".into()
            }
        );
        assert_eq!(e[1].id, "sms-up:99");
        assert!(items::<Up>(b"[{\"content\":1}]").is_err());
    }
}
