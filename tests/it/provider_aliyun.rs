//! `aliyun-sms` and `aliyun-voice` end to end against a fake dysmsapi / dyvmsapi on loopback
//! that recomputes the V3 (ACS3-HMAC-SHA256) signature of every request from the raw request,
//! on its own code (not the adapter's), and answers with Aliyun's own bodies: SendSms, IvrCall,
//! flow control (`isv.BUSINESS_LIMIT_CONTROL`) and QuerySendDetails. Callbacks go through the
//! daemon's hook with the URL token (Aliyun signs no push).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::any;
use axum::Router;
use hmac::{Hmac, Mac};
use jiaoying::channel::event::{Lookup, MessageRef, Unconfirmed, What};
use jiaoying::channel::{Gateways, Outgoing, SendError};
use jiaoying::clock::Clock;
use jiaoying::config::Settings;
use jiaoying::domain::{ChannelKind, Facts};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

use crate::flow::{roster, Person};
use crate::helpers::{demo_cap, spawn, t0, Db, TestApp, FEED};

const KEY_ID: &str = "LTAI-test-key-id";
const SECRET: &str = "test-aliyun-access-key-secret";
const HOOK: &str = "ali-hook-token-0123456789";

/// The environment is shared by the test threads: always the same values.
pub(crate) fn env() {
    std::env::set_var("JIAOYING_TEST_ALI_ID", KEY_ID);
    std::env::set_var("JIAOYING_TEST_ALI_SECRET", SECRET);
    std::env::set_var("JIAOYING_TEST_ALI_HOOK", HOOK);
}

/// One request the fake accepted (signature good).
#[derive(Debug, Clone)]
pub(crate) struct Call {
    action: String,
    pub(crate) params: BTreeMap<String, String>,
    /// What the fake answered with (BizId / CallId).
    pub(crate) id: String,
    /// Beijing date of the call, `yyyyMMdd`.
    day: String,
}

#[derive(Clone)]
pub(crate) struct AliFake {
    calls: Arc<Mutex<Vec<Call>>>,
    bad: Arc<Mutex<Vec<String>>>,
    nonces: Arc<Mutex<HashSet<String>>>,
    /// Answer SendSms / IvrCall with flow control.
    limit: Arc<AtomicBool>,
    /// Answer this many more QuerySendDetails with a system error (`u64::MAX`: all of them).
    pub(crate) query_failures: Arc<AtomicU64>,
    /// Milliseconds to wait, after recording it, before answering a send.
    pub(crate) delay_ms: Arc<AtomicU64>,
    /// SendStatus per OutId (1 = waiting when absent).
    pub(crate) status: Arc<Mutex<HashMap<String, i64>>>,
    /// The daemon's clock once it runs: x-acs-date is checked against it.
    clock: Arc<Mutex<Clock>>,
}

impl AliFake {
    pub(crate) async fn start(clock: Clock) -> (AliFake, String) {
        let fake = AliFake {
            calls: Arc::default(),
            bad: Arc::default(),
            nonces: Arc::default(),
            limit: Arc::default(),
            query_failures: Arc::default(),
            delay_ms: Arc::default(),
            status: Arc::default(),
            clock: Arc::new(Mutex::new(clock)),
        };
        let app = Router::new().route("/", any(handle)).with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, url)
    }

    pub(crate) fn calls(&self, action: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.action == action)
            .cloned()
            .collect()
    }

    pub(crate) fn set_clock(&self, clock: Clock) {
        *self.clock.lock().unwrap() = clock;
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.lock().unwrap().now()
    }

    pub(crate) fn bad(&self) -> Vec<String> {
        self.bad.lock().unwrap().clone()
    }
}

// --- The fake's own V3 verification (PROVIDERS.md §1.3), written apart from src/channel/acs3.rs.

const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, RFC3986).to_string()
}

fn dec(s: &str) -> String {
    percent_decode_str(s).decode_utf8().unwrap().into_owned()
}

fn hex_sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Checks the request as Aliyun would; the decoded query parameters when it holds.
fn verify(
    fake: &AliFake,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<BTreeMap<String, String>, String> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    let auth = h("authorization").ok_or("no Authorization")?;
    let rest = auth
        .strip_prefix("ACS3-HMAC-SHA256 ")
        .ok_or("not ACS3-HMAC-SHA256")?;
    let mut parts = HashMap::new();
    for p in rest.split(',') {
        let (k, v) = p.split_once('=').ok_or("bad Authorization")?;
        parts.insert(k.to_string(), v.to_string());
    }
    if parts.get("Credential").map(String::as_str) != Some(KEY_ID) {
        return Err("InvalidAccessKeyId.NotFound".into());
    }
    let signed: Vec<&str> = parts
        .get("SignedHeaders")
        .ok_or("no SignedHeaders")?
        .split(';')
        .collect();
    for must in [
        "host",
        "x-acs-action",
        "x-acs-version",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-content-sha256",
    ] {
        if !signed.contains(&must) {
            return Err(format!("{must} is not signed"));
        }
    }
    for name in headers.keys() {
        if name.as_str().starts_with("x-acs-") && !signed.contains(&name.as_str()) {
            return Err(format!("{name} is sent but not signed"));
        }
    }
    if h("x-acs-content-sha256") != Some(hex_sha256(body).as_str()) {
        return Err("x-acs-content-sha256 is not the body's".into());
    }
    let date = chrono::NaiveDateTime::parse_from_str(h("x-acs-date").unwrap_or(""), "%Y-%m-%dT%H:%M:%SZ")
        .map_err(|_| "x-acs-date is not yyyy-MM-ddTHH:mm:ssZ")?
        .and_utc();
    if (date - fake.now()).num_seconds().abs() > 900 {
        return Err("x-acs-date is too far from now".into());
    }
    let mut params = BTreeMap::new();
    let mut pairs = Vec::new();
    for kv in uri.query().unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let (k, v) = (dec(k), dec(v));
        pairs.push(format!("{}={}", enc(&k), enc(&v)));
        params.insert(k, v);
    }
    pairs.sort();
    let mut canon_headers = String::new();
    for name in &signed {
        canon_headers += &format!("{name}:{}\n", h(name).unwrap_or(""));
    }
    let canonical = format!(
        "{}\n{}\n{}\n{canon_headers}\n{}\n{}",
        method.as_str(),
        uri.path(),
        pairs.join("&"),
        signed.join(";"),
        hex_sha256(body)
    );
    let to_sign = format!("ACS3-HMAC-SHA256\n{}", hex_sha256(canonical.as_bytes()));
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(to_sign.as_bytes());
    if parts.get("Signature").map(String::as_str) != Some(hex::encode(mac.finalize().into_bytes()).as_str()) {
        return Err("SignatureDoesNotMatch".into());
    }
    let nonce = h("x-acs-signature-nonce").unwrap_or("").to_string();
    if !fake.nonces.lock().unwrap().insert(nonce) {
        return Err("SignatureNonceUsed".into());
    }
    Ok(params)
}

fn request_id() -> String {
    format!("{:08X}-TEST-{:04X}", rand::random::<u32>(), rand::random::<u16>())
}

async fn handle(
    State(fake): State<AliFake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let params = match verify(&fake, &method, &uri, &headers, &body) {
        Ok(p) => p,
        Err(why) => {
            fake.bad.lock().unwrap().push(why.clone());
            return (
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"Code": "SignatureDoesNotMatch", "Message": format!("Specified signature is not matched with our calculation. ({why})"), "RequestId": request_id()}).to_string(),
            );
        }
    };
    let action = headers
        .get("x-acs-action")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bj = fake
        .now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap());
    let day = bj.format("%Y%m%d").to_string();
    match action.as_str() {
        "SendSms" | "IvrCall" | "SingleCallByTts" => {
            if fake.limit.load(Ordering::SeqCst) {
                fake.calls.lock().unwrap().push(Call {
                    action,
                    params,
                    id: String::new(),
                    day,
                });
                return (
                    StatusCode::OK,
                    serde_json::json!({"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发天级流控Permits:10", "RequestId": request_id()}).to_string(),
                );
            }
            let id = {
                let mut calls = fake.calls.lock().unwrap();
                let id = if action == "SendSms" {
                    format!("{}^0", 900_000_000_000_000_000u64 + calls.len() as u64)
                } else {
                    format!("116012354148^{}", 100_000 + calls.len())
                };
                calls.push(Call {
                    action: action.clone(),
                    params,
                    id: id.clone(),
                    day,
                });
                id
            };
            let delay = fake.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let body = if action == "SendSms" {
                serde_json::json!({"Code": "OK", "Message": "OK", "BizId": id, "RequestId": request_id()})
            } else {
                serde_json::json!({"Code": "OK", "Message": "OK", "CallId": id, "RequestId": request_id()})
            };
            (StatusCode::OK, body.to_string())
        }
        "QuerySendDetails" => {
            // Recorded too: what was asked, and how often.
            fake.calls.lock().unwrap().push(Call {
                action: action.clone(),
                params: params.clone(),
                id: String::new(),
                day: day.clone(),
            });
            let fail = fake
                .query_failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                    0 => None,
                    u64::MAX => Some(n),
                    _ => Some(n - 1),
                })
                .is_ok();
            if fail {
                return (
                    StatusCode::OK,
                    serde_json::json!({"Code": "isp.SYSTEM_ERROR", "Message": "系统错误", "RequestId": request_id()}).to_string(),
                );
            }
            for p in ["PhoneNumber", "SendDate", "PageSize", "CurrentPage"] {
                if !params.contains_key(p) {
                    return (
                        StatusCode::BAD_REQUEST,
                        serde_json::json!({"Code": "MissingParameter", "Message": format!("{p} is mandatory for this action."), "RequestId": request_id()}).to_string(),
                    );
                }
            }
            let status = fake.status.lock().unwrap().clone();
            let rows: Vec<serde_json::Value> = fake
                .calls("SendSms")
                .into_iter()
                .filter(|c| !c.id.is_empty())
                .filter(|c| c.params.get("PhoneNumbers") == params.get("PhoneNumber"))
                .filter(|c| Some(&c.day) == params.get("SendDate"))
                .filter(|c| params.get("BizId").is_none_or(|b| *b == c.id))
                .map(|c| {
                    let out = c.params.get("OutId").cloned().unwrap_or_default();
                    let st = status.get(&out).copied().unwrap_or(1);
                    serde_json::json!({
                        "ErrCode": if st == 3 { "DELIVERED" } else if st == 2 { "MK:0001" } else { "" },
                        "TemplateCode": c.params.get("TemplateCode"),
                        "OutId": out,
                        "ReceiveDate": "",
                        "SendDate": "2026-07-15 10:00:00",
                        "PhoneNum": c.params.get("PhoneNumbers"),
                        "Content": "【防汛叫应】…",
                        "SendStatus": st,
                    })
                })
                .collect();
            (
                StatusCode::OK,
                serde_json::json!({"Code": "OK", "Message": "OK", "RequestId": request_id(), "TotalCount": rows.len(),
                    "SmsSendDetailDTOs": {"SmsSendDetailDTO": rows}})
                .to_string(),
            )
        }
        other => (
            StatusCode::NOT_FOUND,
            serde_json::json!({"Code": "InvalidAction.NotFound", "Message": format!("Specified api {other} is not found"), "RequestId": request_id()}).to_string(),
        ),
    }
}

// --- The daemon side.

pub(crate) const SMS_POLICY: &str = r#"
[[policy]]
name = "red"
colours = ["red"]
hazards = ["*"]
roles = ["county_duty", "township_leader"]
channels = ["sms"]
deadline = "1h"
ladder = []
"#;

pub(crate) fn sms_toml(endpoint: &str) -> String {
    format!(
        r#"
[channels]
sms = ["ali"]
[gateways.ali]
kind = "aliyun-sms"
endpoint = "{endpoint}"
access_key_id_env = "JIAOYING_TEST_ALI_ID"
access_key_secret_env = "JIAOYING_TEST_ALI_SECRET"
sign_name = "防汛叫应"
template_code = "SMS_154950909"
hook_token_env = "JIAOYING_TEST_ALI_HOOK"
[gateways.ali.template_params]
code = "code"
long = "event ~ event ~ event ~ event ~ event ~ event ~ event"
{SMS_POLICY}
"#
    )
}

/// The people the policy calls in the counties the demo warning names (from the CSV).
pub(crate) fn expected(roles: &[&str]) -> Vec<Person> {
    roster()
        .into_iter()
        .filter(|p| roles.contains(&p.role.as_str()))
        .filter(|p| {
            ["450921", "450922", "450981"]
                .iter()
                .any(|c| p.region.starts_with(c))
        })
        .collect()
}

pub(crate) async fn eventually<F, Fut>(secs: u64, what: &str, f: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn hook(
    app: &TestApp,
    gateway: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = app
        .http
        .post(format!("{}/hooks/{gateway}/{path}", app.base))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

pub(crate) async fn state_of_key(app: &TestApp, key: &str) -> String {
    sqlx::query_scalar::<_, String>(
        "SELECT c.state FROM callouts c JOIN attempts a ON a.callout_id = c.id WHERE a.message_key = $1 LIMIT 1",
    )
    .bind(key)
    .fetch_one(app.db())
    .await
    .unwrap()
}

pub(crate) async fn count(app: &TestApp, sql: &str) -> i64 {
    app.scalar(sql).await
}

pub(crate) fn national(p: &Person) -> String {
    p.phone.strip_prefix("+86").unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_sent_signed_replies_and_receipts_through_the_token_hook() {
    env();
    let (fake, url) = AliFake::start(Clock::starting_at(t0())).await;
    let app = spawn(Db::Sqlite, &sms_toml(&url)).await.unwrap();
    // The fake checks x-acs-date against the daemon's clock.
    fake.set_clock(app.core.clock.clone());
    app.without_duty_rosters().await;
    let people = expected(&["county_duty", "township_leader"]);
    assert!(people.len() > 20, "{}", people.len());

    let (status, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(status, 202, "{body}");
    let code = body["incidents"][0]["code"].as_str().unwrap().to_string();
    eventually(60, "one SendSms per person", || async {
        fake.calls("SendSms").len() >= people.len()
    })
    .await;
    assert!(fake.bad().is_empty(), "{:?}", fake.bad());
    let sends = fake.calls("SendSms");
    assert_eq!(sends.len(), people.len());
    let to: HashSet<String> = sends.iter().map(|c| c.params["PhoneNumbers"].clone()).collect();
    let want: HashSet<String> = people.iter().map(national).collect();
    assert_eq!(to, want);
    let long: String = "暴雨红色预警".repeat(7).chars().take(35).collect();
    for c in &sends {
        assert_eq!(c.params["SignName"], "防汛叫应");
        assert_eq!(c.params["TemplateCode"], "SMS_154950909");
        let vars: BTreeMap<String, String> = serde_json::from_str(&c.params["TemplateParam"]).unwrap();
        assert_eq!(vars["code"], code);
        assert_eq!(vars["long"], long, "cut to 35 characters");
        let key = &c.params["OutId"];
        assert!(key.starts_with('c') && key.contains("-j"), "{key}");
    }
    // Every attempt's key is the OutId sent, and its reference the BizId answered.
    eventually(30, "every call-out sent", || async {
        count(&app, "SELECT COUNT(*) FROM callouts WHERE state = 'sent'").await == people.len() as i64
    })
    .await;
    for c in sends.iter().take(5) {
        let r: String = sqlx::query_scalar("SELECT gateway_ref FROM attempts WHERE message_key = $1")
            .bind(&c.params["OutId"])
            .fetch_one(app.db())
            .await
            .unwrap();
        assert_eq!(r, c.id);
    }

    // A reply: SmsUp with the token acknowledges that person's call-out.
    let first = &sends[0];
    let up = serde_json::json!([{"phone_number": first.params["PhoneNumbers"], "content": "收到",
        "send_time": "2026-07-15 10:01:00", "dest_code": "1234", "sequence_id": 1234567890u64}]);
    let (status, ans) = hook(&app, "ali", &format!("{HOOK}/sms-up"), up.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(ans, serde_json::json!({"code": 0, "msg": "接收成功"}));
    assert_eq!(state_of_key(&app, &first.params["OutId"]).await, "acknowledged");
    let acked = count(&app, "SELECT COUNT(*) FROM callouts WHERE state = 'acknowledged'").await;
    assert_eq!(acked, 1);
    // The same push again is a replay: kept, nothing changes.
    let (status, _) = hook(&app, "ali", &format!("{HOOK}/sms-up"), up.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM inbound WHERE outcome = 'replayed'").await,
        1
    );
    // No token, a wrong token: refused, nothing changes.
    let second = &sends[1];
    let up2 = serde_json::json!([{"phone_number": second.params["PhoneNumbers"], "content": "收到", "sequence_id": "77"}]);
    let (status, _) = hook(&app, "ali", "sms-up", up2.clone()).await;
    assert_eq!(status, 401);
    let (status, _) = hook(&app, "ali", "wrong-token-0123456789/sms-up", up2.clone()).await;
    assert_eq!(status, 401);
    assert_eq!(state_of_key(&app, &second.params["OutId"]).await, "sent");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM callouts WHERE state = 'acknowledged'").await,
        acked
    );

    // A receipt marks delivered and answers nothing; by BizId alone too.
    let report = serde_json::json!([
        {"phone_number": second.params["PhoneNumbers"], "send_time": "2026-07-15 10:00:01", "report_time": "2026-07-15 10:00:05",
         "success": true, "err_code": "DELIVERED", "err_msg": "用户接收成功", "sms_size": "1", "biz_id": second.id, "out_id": second.params["OutId"]},
        {"phone_number": sends[2].params["PhoneNumbers"], "success": true, "err_code": "DELIVERED", "sms_size": "1", "biz_id": sends[2].id}
    ]);
    let (status, ans) = hook(&app, "ali", &format!("{HOOK}/sms-report"), report).await;
    assert_eq!(status, 200);
    assert_eq!(ans["code"], 0);
    assert_eq!(state_of_key(&app, &second.params["OutId"]).await, "delivered");
    assert_eq!(state_of_key(&app, &sends[2].params["OutId"]).await, "delivered");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM callouts WHERE state = 'acknowledged'").await,
        acked
    );
    // An unknown hook on this gateway.
    let (status, _) = hook(
        &app,
        "ali",
        &format!("{HOOK}/voice-report"),
        serde_json::json!([]),
    )
    .await;
    assert_eq!(status, 404);
    assert!(fake.bad().is_empty(), "{:?}", fake.bad());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_control_is_capped_not_retried() {
    env();
    let (fake, url) = AliFake::start(Clock::starting_at(t0())).await;
    fake.limit.store(true, Ordering::SeqCst);
    let app = spawn(Db::Sqlite, &sms_toml(&url)).await.unwrap();
    fake.set_clock(app.core.clock.clone());
    app.without_duty_rosters().await;
    let people = expected(&["county_duty", "township_leader"]);
    let (status, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(status, 202, "{body}");
    // With one gateway on the channel, a capped send has nowhere to fail over: the call-out fails.
    eventually(60, "every call-out failed", || async {
        count(&app, "SELECT COUNT(*) FROM callouts WHERE state = 'failed'").await == people.len() as i64
    })
    .await;
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM attempts WHERE result = 'capped'").await,
        people.len() as i64
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM attempts").await,
        people.len() as i64
    );
    assert_eq!(
        fake.calls("SendSms").len(),
        people.len(),
        "one request per person, no retry"
    );
    let detail: String = sqlx::query_scalar("SELECT detail FROM attempts LIMIT 1")
        .fetch_one(app.db())
        .await
        .unwrap();
    assert!(detail.contains("isv.BUSINESS_LIMIT_CONTROL"), "{detail}");
    assert!(fake.bad().is_empty(), "{:?}", fake.bad());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_ivr_key_one_and_heard_in_full_answer() {
    env();
    let (fake, url) = AliFake::start(Clock::starting_at(t0())).await;
    let toml = format!(
        r#"
[channels]
sms = []
voice = ["alivoice"]
[gateways.alivoice]
kind = "aliyun-voice"
endpoint = "{url}"
access_key_id_env = "JIAOYING_TEST_ALI_ID"
access_key_secret_env = "JIAOYING_TEST_ALI_SECRET"
called_show_number = "057100000000"
tts_code = "TTS_100000001"
ack_tts_code = "TTS_100000002"
play_times = 2
key_timeout = "8s"
hook_token_env = "JIAOYING_TEST_ALI_HOOK"
[gateways.alivoice.template_params]
event = "event"
place = "place"
[[policy]]
name = "red"
colours = ["red"]
hazards = ["*"]
roles = ["township_deputy"]
channels = ["voice"]
deadline = "1h"
ladder = []
"#
    );
    let app = spawn(Db::Sqlite, &toml).await.unwrap();
    fake.set_clock(app.core.clock.clone());
    app.without_duty_rosters().await;
    // Township deputies keep the policy's channels (county duty officers prefer SMS).
    let people = expected(&["township_deputy"]);
    assert!(people.len() >= 3, "{}", people.len());
    let (status, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(status, 202, "{body}");
    eventually(60, "one IvrCall per person", || async {
        fake.calls("IvrCall").len() >= people.len()
    })
    .await;
    let calls = fake.calls("IvrCall");
    assert_eq!(calls.len(), people.len());
    assert!(fake.calls("SingleCallByTts").is_empty());
    let want: HashSet<String> = people.iter().map(national).collect();
    assert_eq!(
        calls
            .iter()
            .map(|c| c.params["CalledNumber"].clone())
            .collect::<HashSet<_>>(),
        want
    );
    for c in &calls {
        let p = &c.params;
        assert_eq!(p["MenuKeyMap.1.Key"], "1");
        assert_eq!(p["MenuKeyMap.1.Code"], "TTS_100000002");
        assert_eq!(p["StartCode"], "TTS_100000001");
        assert_eq!(p["CalledShowNumber"], "057100000000");
        assert_eq!(p["PlayTimes"], "2");
        assert_eq!(p["Timeout"], "8000");
        assert!(!p["OutId"].is_empty() && p["OutId"].len() <= 15, "{}", p["OutId"]);
        let vars: BTreeMap<String, String> = serde_json::from_str(&p["StartTtsParams"]).unwrap();
        assert_eq!(vars["event"], "暴雨红色预警");
        assert!(vars.values().map(|v| v.chars().count()).sum::<usize>() < 250);
    }
    eventually(30, "every call sent", || async {
        count(&app, "SELECT COUNT(*) FROM callouts WHERE state = 'sent'").await == people.len() as i64
    })
    .await;
    let state_of_call = |id: String| {
        let app = &app;
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT c.state FROM callouts c JOIN attempts a ON a.callout_id = c.id WHERE a.gateway_ref = $1",
            )
            .bind(id)
            .fetch_one(app.db())
            .await
            .unwrap()
        }
    };
    let (a, b, c) = (&calls[0], &calls[1], &calls[2]);
    // Intermediate states are no event; a 300000 with dtmf 1 answers.
    let (status, ans) = hook(
        &app,
        "alivoice",
        &format!("{HOOK}/voice-call-report"),
        serde_json::json!([
            {"call_id": a.id, "status_code": "200201", "status_time": "2026-07-15 10:00:03", "out_id": a.params["OutId"]},
            {"call_id": c.id, "status_code": "200102", "status_time": "2026-07-15 10:00:04", "out_id": c.params["OutId"]},
            {"call_id": a.id, "status_code": "300000", "dtmf": "1", "status_time": "2026-07-15 10:00:09", "out_id": a.params["OutId"]}
        ]),
    )
    .await;
    assert_eq!((status, ans["code"].clone()), (200, serde_json::json!(0)));
    assert_eq!(state_of_call(a.id.clone()).await, "acknowledged");
    assert_eq!(state_of_call(c.id.clone()).await, "sent");
    // Heard to the end answers where the policy says so (heard_answers defaults to true).
    let (status, _) = hook(
        &app,
        "alivoice",
        &format!("{HOOK}/voice-report"),
        serde_json::json!([{"call_id": b.id, "start_time": "2026-07-15 10:00:05", "end_time": "2026-07-15 10:00:35",
            "duration": "30", "status_code": "200000", "smart_status_code": "ANSWERED", "status_msg": "用户听完语音",
            "out_id": b.params["OutId"], "caller": "057100000000", "callee": b.params["CalledNumber"]}]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(state_of_call(b.id.clone()).await, "acknowledged");
    // Not answered: no answer; without the token: refused.
    let (status, _) = hook(
        &app,
        "alivoice",
        &format!("{HOOK}/voice-report"),
        serde_json::json!([{"call_id": c.id, "status_code": "200003", "status_msg": "", "duration": "0"}]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(state_of_call(c.id.clone()).await, "sent");
    let (status, _) = hook(
        &app,
        "alivoice",
        "voice-call-report",
        serde_json::json!([{"call_id": c.id, "status_code": "300000", "dtmf": "1", "status_time": "t"}]),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(state_of_call(c.id.clone()).await, "sent");
    assert!(fake.bad().is_empty(), "{:?}", fake.bad());
    app.stop().await;
}

fn outgoing(key: &str, to: &str) -> Outgoing {
    Outgoing {
        attempt_id: 1,
        key: key.into(),
        kind: ChannelKind::Sms,
        to: to.into(),
        subject: String::new(),
        text: "【防汛叫应】暴雨红色预警".into(),
        html: None,
        facts: Arc::new(Facts {
            signature: "【防汛叫应】".into(),
            event: "暴雨红色预警".into(),
            headline: "暴雨红色预警".into(),
            description: String::new(),
            instruction: String::new(),
            place: "松岭村".into(),
            link: "https://jy.test/a/x".into(),
            code: "A37".into(),
            drill: false,
            evacuation: false,
            change: None,
            knock: None,
            round: None,
        }),
        last_route: false,
    }
}

/// A send answered too late: the adapter says `Unanswered`, and QuerySendDetails then finds it
/// by OutId (so the retry need not send again); a key never sent is `Absent`; a failing query
/// is `Unknown`; reconciliation reads the receipts the query has. (The end-to-end version, the
/// dispatcher asking `lookup` before a resend, waits for that side on main.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_finds_a_send_whose_answer_was_lost() {
    env();
    let clock = Clock::starting_at(t0());
    let (fake, url) = AliFake::start(clock.clone()).await;
    let settings = Settings::from_toml(&format!(
        r#"
[gateways.ali]
kind = "aliyun-sms"
endpoint = "{url}"
access_key_id_env = "JIAOYING_TEST_ALI_ID"
access_key_secret_env = "JIAOYING_TEST_ALI_SECRET"
sign_name = "防汛叫应"
template_code = "SMS_154950909"
timeout = "300ms"
[gateways.ali.template_params]
place = "place"
"#
    ))
    .unwrap();
    let gws = Gateways::build(&settings, &clock).unwrap();
    let ali = gws.get("ali").unwrap();

    fake.delay_ms.store(1500, Ordering::SeqCst);
    let msg = outgoing("c41-j77", "+8613800000001");
    let r = ali.send(&msg).await;
    assert!(matches!(r, Err(SendError::Unanswered { .. })), "{r:?}");
    let sent = fake.calls("SendSms");
    assert_eq!(sent.len(), 1, "it arrived although its answer was lost");
    fake.delay_ms.store(0, Ordering::SeqCst);

    assert_eq!(ali.lookup(&msg).await, Lookup::Accepted("c41-j77".into()));
    assert_eq!(
        ali.lookup(&outgoing("c41-j78", "+8613800000001")).await,
        Lookup::Absent
    );
    assert_eq!(
        ali.lookup(&outgoing("c41-j77", "+8613800000002")).await,
        Lookup::Absent
    );
    assert_eq!(fake.calls("SendSms").len(), 1, "a lookup sends nothing");

    // Reconciliation: waiting → no event; delivered → a receipt for our key.
    let sends = [Unconfirmed {
        key: "c41-j77".into(),
        provider_id: Some(sent[0].id.clone()),
        to: "+8613800000001".into(),
        sent_at: clock.now_ms(),
    }];
    assert!(ali.reconcile(&sends).await.is_empty());
    fake.status.lock().unwrap().insert("c41-j77".into(), 3);
    let events = ali.reconcile(&sends).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, "sms-report:c41-j77:delivered");
    assert_eq!(
        events[0].what,
        What::Receipt {
            message: MessageRef::Key("c41-j77".into()),
            delivered: true,
            detail: "DELIVERED".into()
        }
    );

    fake.query_failures.store(u64::MAX, Ordering::SeqCst);
    let failed = ali.lookup(&msg).await;
    assert!(
        matches!(&failed, Lookup::Failed(r) if r.contains("isp.SYSTEM_ERROR")),
        "{failed:?}"
    );
    assert!(ali.reconcile(&sends).await.is_empty());
    assert!(fake.bad().is_empty(), "{:?}", fake.bad());

    // A wrong secret is refused by the fake's own check: the test can fail.
    std::env::set_var("JIAOYING_TEST_ALI_SECRET_WRONG", "not-the-secret");
    let wrong = Settings::from_toml(&format!(
        r#"
[gateways.ali]
kind = "aliyun-sms"
endpoint = "{url}"
access_key_id_env = "JIAOYING_TEST_ALI_ID"
access_key_secret_env = "JIAOYING_TEST_ALI_SECRET_WRONG"
sign_name = "防汛叫应"
template_code = "SMS_154950909"
"#
    ))
    .unwrap();
    let gws = Gateways::build(&wrong, &clock).unwrap();
    let r = gws.get("ali").unwrap().send(&msg).await;
    assert!(
        matches!(&r, Err(SendError::Permanent { reason }) if reason.contains("SignatureDoesNotMatch")),
        "{r:?}"
    );
    assert_eq!(fake.bad(), vec!["SignatureDoesNotMatch".to_string()]);
}

#[test]
fn config_errors_name_the_key() {
    let clock = Clock::frozen(t0());
    let toml = |secret_env: &str, sign: &str| {
        format!(
            r#"
[gateways.ali]
kind = "aliyun-sms"
access_key_id_env = "JIAOYING_TEST_ALI_ID"
access_key_secret_env = "{secret_env}"
sign_name = "{sign}"
template_code = "SMS_1"
"#
        )
    };
    env();
    let s = Settings::from_toml(&toml("ALIYUN_SECRET_SURELY_UNSET", "防汛")).unwrap();
    let e = Gateways::build(&s, &clock).err().unwrap().to_string();
    assert_eq!(
        e,
        "gateways.ali.access_key_secret_env: ALIYUN_SECRET_SURELY_UNSET is not set"
    );
    let s = Settings::from_toml(&toml("JIAOYING_TEST_ALI_SECRET", "")).unwrap();
    let e = Gateways::build(&s, &clock).err().unwrap().to_string();
    assert_eq!(e, "gateways.ali.sign_name: missing");
}
