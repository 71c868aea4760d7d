//! Tencent Cloud SMS and the bot webhooks against local fakes of the providers. The fake
//! sms.tencentcloudapi.com recomputes TC3-HMAC-SHA256 from the raw request (its own code, not
//! jiaoying's) and refuses a wrong one with Tencent's `AuthFailure.SignatureFailure`; it answers
//! SendSms with Tencent's body shape, a frequency-limit code when told to, and serves
//! PullSmsSendStatusByPhoneNumber. The fake DingTalk robot checks `timestamp` + `sign`; the
//! fake WeCom robot checks its key. End to end through the daemon: a warning goes out as
//! signed SendSms with the template filled and our key as SessionContext; reply and status
//! pushes behind the URL token (wrong token 401, a replay changes nothing, delivered is not an
//! answer); a frequency limit is recorded `capped`; a DingTalk robot @mentions the phone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use base64::Engine;
use hmac::{Hmac, Mac};
use jiaoying::channel::event::{Lookup, Unconfirmed, What};
use jiaoying::channel::{Gateways, Outgoing, SendError};
use jiaoying::clock::Clock;
use jiaoying::config::Settings;
use jiaoying::domain::{ChannelKind, Facts};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{beijing, demo_cap, spawn_at, t0, Db, TestApp, FEED};

const SECRET_ID: &str = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE";
const SECRET_KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";
const HOOK_TOKEN: &str = "tencent-hook-token-0123456789";
const DING_SECRET: &str = "SEC-test-dingtalk-secret";
const DING_TOKEN: &str = "ding-access-token";
const WECOM_KEY: &str = "wecom-robot-key";

const POLICY: &str = r#"
[[policy]]
name = "red"
colours = ["red"]
hazards = ["*"]
roles = ["county_duty"]
channels = ["sms"]
deadline = "1h"
ladder = ["backup"]
"#;

/// The county duty officers of the three counties the demo warning names (contacts.csv).
const PHONES: [&str; 3] = ["+8617000111831", "+8617001674973", "+8617008409516"];

fn env() {
    // The same values in every test: the environment is shared by the test threads.
    std::env::set_var("JY_TEST_TX_ID", SECRET_ID);
    std::env::set_var("JY_TEST_TX_KEY", SECRET_KEY);
    std::env::set_var("JY_TEST_TX_WRONG_KEY", "not-the-key-not-the-key-not-the");
    std::env::set_var("JY_TEST_TX_HOOK", HOOK_TOKEN);
    std::env::set_var("JY_TEST_DING_SECRET", DING_SECRET);
}

fn hmac256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

// ---------------------------------------------------------------- the fake Tencent Cloud

#[derive(Debug, Clone)]
struct SmsSent {
    body: Value,
    serial: String,
}

#[derive(Clone)]
struct Tencent {
    sent: Arc<Mutex<Vec<SmsSent>>>,
    pulls: Arc<AtomicUsize>,
    bad_signatures: Arc<AtomicUsize>,
    /// When set, every SendSms is answered with this per-number code.
    limit_code: Arc<Mutex<Option<String>>>,
    clock: Clock,
}

impl Tencent {
    async fn start(clock: Clock) -> (Tencent, String) {
        let fake = Tencent {
            sent: Arc::default(),
            pulls: Arc::default(),
            bad_signatures: Arc::default(),
            limit_code: Arc::default(),
            clock,
        };
        let app = Router::new().route("/", post(tencent)).with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, url)
    }

    fn sent(&self) -> Vec<SmsSent> {
        self.sent.lock().unwrap().clone()
    }

    async fn wait_sent(&self, n: usize) -> Vec<SmsSent> {
        let start = Instant::now();
        loop {
            let s = self.sent();
            if s.len() >= n {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out waiting for {n} SendSms; have {}",
                s.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Tencent's error envelope.
fn error(code: &str, message: &str) -> String {
    json!({"Response": {"Error": {"Code": code, "Message": message},
        "RequestId": "ed93f3cb-f35e-473f-b9f3-0d451b8b79c6"}})
    .to_string()
}

/// TC3-HMAC-SHA256 as Tencent checks it, from the request as it arrived: the headers named
/// in SignedHeaders, the body's hash, the UTC date in the credential, a 5-minute skew.
fn check_tc3(headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), &'static str> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let auth = h("authorization");
    let rest = auth
        .strip_prefix("TC3-HMAC-SHA256 ")
        .ok_or("AuthFailure.InvalidAuthorization")?;
    let mut credential = "";
    let mut signed = "";
    let mut signature = "";
    for part in rest.split(", ") {
        match part.split_once('=') {
            Some(("Credential", v)) => credential = v,
            Some(("SignedHeaders", v)) => signed = v,
            Some(("Signature", v)) => signature = v,
            _ => return Err("AuthFailure.InvalidAuthorization"),
        }
    }
    let (id, scope) = credential
        .split_once('/')
        .ok_or("AuthFailure.InvalidAuthorization")?;
    if id != SECRET_ID {
        return Err("AuthFailure.SecretIdNotFound");
    }
    let ts: i64 = h("x-tc-timestamp").parse().map_err(|_| "MissingParameter")?;
    if (ts - now).abs() > 300 {
        return Err("AuthFailure.SignatureExpire");
    }
    let date = chrono::DateTime::from_timestamp(ts, 0)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    if scope != format!("{date}/sms/tc3_request") {
        return Err("AuthFailure.SignatureFailure");
    }
    let names: Vec<&str> = signed.split(';').collect();
    if !names.contains(&"content-type") || !names.contains(&"host") {
        return Err("AuthFailure.SignatureFailure");
    }
    let canonical_headers: String = names
        .iter()
        .map(|n| format!("{n}:{}\n", h(n).trim().to_lowercase()))
        .collect();
    let canonical = format!(
        "POST\n/\n\n{canonical_headers}\n{signed}\n{}",
        hex::encode(Sha256::digest(body))
    );
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{ts}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k = hmac256(format!("TC3{SECRET_KEY}").as_bytes(), date.as_bytes());
    let k = hmac256(&k, b"sms");
    let k = hmac256(&k, b"tc3_request");
    if hex::encode(hmac256(&k, to_sign.as_bytes())) != signature {
        return Err("AuthFailure.SignatureFailure");
    }
    Ok(())
}

async fn tencent(State(fake): State<Tencent>, headers: HeaderMap, body: Bytes) -> String {
    if let Err(code) = check_tc3(&headers, &body, fake.clock.now_secs()) {
        fake.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return error(
            code,
            "The provided credentials could not be validated. Please check your signature is correct.",
        );
    }
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    if h("x-tc-version") != "2021-01-11" || h("x-tc-region").is_empty() {
        return error("InvalidParameter", "version or region");
    }
    if h("content-type") != "application/json; charset=utf-8" {
        return error("InvalidParameter", "content type");
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error("FailedOperation.FailResolvePacket", "body");
    };
    match h("x-tc-action") {
        "SendSms" => {
            let phone = req["PhoneNumberSet"][0].as_str().unwrap_or("").to_string();
            let session = req["SessionContext"].as_str().unwrap_or("").to_string();
            let limit = fake.limit_code.lock().unwrap().clone();
            let mut sent = fake.sent.lock().unwrap();
            let status = match limit {
                Some(code) => json!({"SerialNo": "", "PhoneNumber": phone, "Fee": 0,
                    "SessionContext": session, "Code": code,
                    "Message": "the number of sms messages sent from a single mobile number every day exceeds the upper limit",
                    "IsoCode": "CN"}),
                None => {
                    let serial = format!("2433:{:028}", 1045710669157053657u64 + sent.len() as u64);
                    sent.push(SmsSent {
                        body: req.clone(),
                        serial: serial.clone(),
                    });
                    json!({"SerialNo": serial, "PhoneNumber": phone, "Fee": 1,
                        "SessionContext": session, "Code": "Ok", "Message": "send success",
                        "IsoCode": "CN"})
                }
            };
            json!({"Response": {"SendStatusSet": [status],
                "RequestId": "a0aabda6-cf91-4f3e-a81f-9198114a2279"}})
            .to_string()
        }
        "PullSmsSendStatusByPhoneNumber" => {
            fake.pulls.fetch_add(1, Ordering::SeqCst);
            for k in ["BeginTime", "Offset", "Limit", "PhoneNumber", "SmsSdkAppId"] {
                if req.get(k).is_none() {
                    return error("MissingParameter", k);
                }
            }
            let phone = req["PhoneNumber"].as_str().unwrap_or("");
            let offset = req["Offset"].as_u64().unwrap_or(0) as usize;
            let limit = req["Limit"].as_u64().unwrap_or(0) as usize;
            let set: Vec<Value> = fake
                .sent()
                .iter()
                .filter(|s| s.body["PhoneNumberSet"][0] == phone)
                .skip(offset)
                .take(limit)
                .map(|s| {
                    json!({"UserReceiveTime": fake.clock.now_secs(), "CountryCode": "86",
                        "SubscriberNumber": phone.trim_start_matches("+86"), "PhoneNumber": phone,
                        "SerialNo": s.serial, "ReportStatus": "SUCCESS",
                        "Description": "用户短信送达成功", "SessionContext": s.body["SessionContext"]})
                })
                .collect();
            json!({"Response": {"PullSmsSendStatusSet": set,
                "RequestId": "b2c8b1a4-1d84-4e8b-8a5c-bd0b3e4c3b2e"}})
            .to_string()
        }
        _ => error("InvalidAction", "no such action"),
    }
}

fn tencent_toml(endpoint: &str, key_env: &str) -> String {
    format!(
        r#"
[gateways.tx]
kind = "tencent-sms"
endpoint = "{endpoint}"
region = "ap-guangzhou"
secret_id_env = "JY_TEST_TX_ID"
secret_key_env = "{key_env}"
sdk_app_id = "1400006666"
sign_name = "防汛叫应"
template_id = "1110"
template_params = ["event", "place", "code"]
hook_token_env = "JY_TEST_TX_HOOK"
"#
    )
}

async fn spawn_tencent() -> (TestApp, Tencent) {
    env();
    let clock = Clock::starting_at(t0());
    let (fake, url) = Tencent::start(clock.clone()).await;
    let extra = format!(
        "{}\n[channels]\nsms = [\"tx\"]\n{POLICY}",
        tencent_toml(&url, "JY_TEST_TX_KEY")
    );
    let app = spawn_at(Db::Sqlite, &extra, clock).await.unwrap();
    app.without_duty_rosters().await;
    (app, fake)
}

async fn wait_scalar(app: &TestApp, sql: &str, want: i64) {
    let start = Instant::now();
    loop {
        let got = app.scalar(sql).await;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {sql} = {want}; it is {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn push(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let r = app
        .http
        .post(format!("{}/hooks/tx/{path}", app.base))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_goes_out_as_signed_send_sms_with_the_template_filled() {
    let (app, fake) = spawn_tencent().await;
    let (status, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(status, 202, "{body}");
    let code = body["incidents"][0]["code"].as_str().unwrap().to_string();
    let sent = fake.wait_sent(3).await;
    assert_eq!(fake.bad_signatures.load(Ordering::SeqCst), 0);
    let mut to: Vec<&str> = sent
        .iter()
        .map(|s| s.body["PhoneNumberSet"][0].as_str().unwrap())
        .collect();
    to.sort();
    assert_eq!(to, PHONES);
    for s in &sent {
        let b = &s.body;
        assert_eq!(b["SmsSdkAppId"], "1400006666");
        assert_eq!(b["SignName"], "防汛叫应");
        assert_eq!(b["TemplateId"], "1110");
        let params: Vec<&str> = b["TemplateParamSet"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(params.len(), 3, "{b}");
        assert_eq!(params[0], "暴雨红色预警");
        assert!(!params[1].is_empty() && params[1].chars().count() <= 20, "{b}");
        assert_eq!(params[2], code);
        // Our key, the one the attempt was written with.
        let phone = b["PhoneNumberSet"][0].as_str().unwrap();
        let session = b["SessionContext"].as_str().unwrap();
        assert!(session.starts_with('c') && session.contains("-j"), "{session}");
        wait_scalar(
            &app,
            &format!(
                "SELECT COUNT(*) FROM attempts WHERE gateway = 'tx' AND address = '{phone}' \
                 AND message_key = '{session}' AND result = 'sent' AND gateway_ref = '{}'",
                s.serial
            ),
            1,
        )
        .await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_and_receipts_through_the_token_hooks() {
    let (app, fake) = spawn_tencent().await;
    let (status, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(status, 202, "{body}");
    let sent = fake.wait_sent(3).await;
    wait_scalar(&app, "SELECT COUNT(*) FROM attempts WHERE result = 'sent'", 3).await;
    let acked = "SELECT COUNT(*) FROM callouts WHERE acked_at IS NOT NULL";
    let inbound = "SELECT COUNT(*) FROM inbound";

    let reply = json!({"extend": "", "mobile": "17000111831", "nationcode": "86",
        "sign": "防汛叫应", "text": "收到", "time": app.core.clock.now_secs()});
    let (status, body) = push(&app, &format!("{HOOK_TOKEN}/reply"), &reply).await;
    assert_eq!((status, body), (200, json!({"result": 0, "errmsg": "OK"})));
    assert_eq!(app.scalar(acked).await, 1);
    let acked_phone = "SELECT COUNT(*) FROM callouts c JOIN contacts p ON p.id = c.contact_id \
        WHERE c.acked_at IS NOT NULL AND p.key = 'c-450921-duty'";
    assert_eq!(app.scalar(acked_phone).await, 1);

    // The same push again: kept as a replay, nothing else changes.
    let (status, _) = push(&app, &format!("{HOOK_TOKEN}/reply"), &reply).await;
    assert_eq!(status, 200);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM inbound WHERE outcome = 'replayed'")
            .await,
        1
    );
    assert_eq!(app.scalar(acked).await, 1);

    // A wrong token, or none: 401 and nothing kept.
    let before = app.scalar(inbound).await;
    let other = json!({"mobile": "17001674973", "nationcode": "86", "text": "收到", "time": 1});
    let (status, _) = push(&app, "wrong-token-0123456789abc/reply", &other).await;
    assert_eq!(status, 401);
    let (status, _) = push(&app, "reply", &other).await;
    assert_eq!(status, 401);
    assert_eq!(app.scalar(inbound).await, before);
    assert_eq!(app.scalar(acked).await, 1);

    // A status push: delivered, not answered.
    let second = sent
        .iter()
        .find(|s| s.body["PhoneNumberSet"][0] == "+8617001674973")
        .unwrap();
    let report = json!([{"user_receive_time": "2026-07-15 10:00:05", "nationcode": "86",
        "mobile": "17001674973", "report_status": "SUCCESS", "errmsg": "DELIVRD",
        "description": "用户短信送达成功", "sid": second.serial}]);
    let (status, body) = push(&app, &format!("{HOOK_TOKEN}/status"), &report).await;
    assert_eq!((status, body), (200, json!({"result": 0, "errmsg": "OK"})));
    let delivered = "SELECT COUNT(*) FROM callouts c JOIN contacts p ON p.id = c.contact_id \
        WHERE c.delivered_at IS NOT NULL AND c.acked_at IS NULL AND p.key = 'c-450922-duty'";
    assert_eq!(app.scalar(delivered).await, 1);
    assert_eq!(app.scalar(acked).await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frequency_limit_is_recorded_capped() {
    let (app, fake) = spawn_tencent().await;
    *fake.limit_code.lock().unwrap() = Some("LimitExceeded.PhoneNumberDailyLimit".into());
    let (status, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(status, 202, "{body}");
    wait_scalar(
        &app,
        "SELECT COUNT(*) FROM attempts WHERE gateway = 'tx' AND result = 'capped' \
         AND detail LIKE '%LimitExceeded.PhoneNumberDailyLimit%'",
        3,
    )
    .await;
    // Capped is not retried against the same gateway: three tries, no more.
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM attempts WHERE gateway = 'tx'")
            .await,
        3
    );
    assert_eq!(fake.bad_signatures.load(Ordering::SeqCst), 0);
    app.stop().await;
}

fn outgoing(key: &str, to: &str) -> Outgoing {
    Outgoing {
        attempt_id: 1,
        key: key.into(),
        kind: ChannelKind::Sms,
        to: to.into(),
        subject: String::new(),
        text: "【防汛叫应】暴雨红色预警，回1确认".into(),
        html: None,
        facts: Arc::new(Facts {
            signature: "【防汛叫应】".into(),
            event: "暴雨红色预警".into(),
            headline: "暴雨红色预警".into(),
            description: String::new(),
            instruction: String::new(),
            place: "容县松岭镇旺坡村木棉村大坡村松岭村新塘村石头村六王村".into(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_and_reconcile_ask_the_status_pull() {
    env();
    // Half past midnight in Beijing: the UTC date is the day before, and the fake checks it.
    let clock = Clock::starting_at(beijing("2026-07-16 00:30:00"));
    let (fake, url) = Tencent::start(clock.clone()).await;
    let toml = format!(
        "{}\n[gateways.bad]\n{}",
        tencent_toml(&url, "JY_TEST_TX_KEY"),
        tencent_toml(&url, "JY_TEST_TX_WRONG_KEY").replace("[gateways.tx]\n", "")
    );
    let settings = Settings::from_toml(&toml).unwrap();
    let gws = Gateways::build(&settings, &clock).unwrap();
    let tx = gws.get("tx").unwrap();

    let msg = outgoing("c7-j9", "+8613800000000");
    let serial = tx.send(&msg).await.unwrap();
    assert!(serial.starts_with("2433:"), "{serial}");
    // Each variable cut to param_limit (20).
    assert_eq!(
        fake.sent()[0].body["TemplateParamSet"][1]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        20
    );
    assert_eq!(tx.lookup(&msg).await, Lookup::Accepted(serial.clone()));
    // A key Tencent has no report for: it cannot tell (reports lag), so not Absent.
    assert_eq!(
        tx.lookup(&outgoing("c7-j10", "+8613800000000")).await,
        Lookup::Unknown
    );

    let events = tx
        .reconcile(&[
            Unconfirmed {
                key: "c7-j9".into(),
                provider_id: Some(serial.clone()),
                to: "+8613800000000".into(),
                sent_at: clock.now_ms(),
            },
            Unconfirmed {
                key: "c8-j1".into(),
                provider_id: None,
                to: "+8613900000000".into(),
                sent_at: clock.now_ms(),
            },
        ])
        .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].id, format!("{serial}:SUCCESS"));
    assert!(matches!(events[0].what, What::Receipt { delivered: true, .. }));
    assert_eq!(fake.bad_signatures.load(Ordering::SeqCst), 0);

    // The fake refuses a wrong key with Tencent's own error, read as permanent.
    let e = gws.get("bad").unwrap().send(&msg).await.unwrap_err();
    assert!(
        matches!(&e, SendError::Permanent { reason } if reason.contains("AuthFailure.SignatureFailure")),
        "{e:?}"
    );
    assert_eq!(fake.bad_signatures.load(Ordering::SeqCst), 1);

    // A frequency code answered directly: capped.
    *fake.limit_code.lock().unwrap() = Some("LimitExceeded.PhoneNumberThirtySecondLimit".into());
    assert!(matches!(tx.send(&msg).await, Err(SendError::Capped { .. })));
}

#[test]
fn config_errors_name_the_key() {
    env();
    let base = tencent_toml("https://sms.tencentcloudapi.com/", "JY_TEST_TX_KEY");
    let clock = Clock::frozen(t0());
    let err = |toml: String| {
        let s = Settings::from_toml(&toml).unwrap();
        Gateways::build(&s, &clock).err().unwrap().to_string()
    };
    assert_eq!(
        err(base.replace("sign_name = \"防汛叫应\"", "sign_name = \"\"")),
        "gateways.tx.sign_name: missing"
    );
    assert!(err(base.replace("JY_TEST_TX_KEY", "JY_TEST_TX_UNSET"))
        .starts_with("gateways.tx.secret_key_env: the environment variable JY_TEST_TX_UNSET"));
    assert!(
        err(base.replace("[\"event\", \"place\", \"code\"]", "[\"event\", \"plase\"]"))
            .starts_with("gateways.tx.template_params.1:")
    );
    assert!(
        err("[gateways.w]\nkind = \"webhook\"\npreset = \"wecom\"\n".into())
            .starts_with("gateways.w.endpoint: missing")
    );
}

// ---------------------------------------------------------------- fake robots

#[derive(Clone)]
struct Robot {
    received: Arc<Mutex<Vec<Value>>>,
    refused: Arc<AtomicUsize>,
    /// The errcode to answer (0: ok).
    errcode: Arc<Mutex<i64>>,
    clock: Clock,
}

impl Robot {
    async fn start(clock: Clock) -> (Robot, String) {
        let robot = Robot {
            received: Arc::default(),
            refused: Arc::default(),
            errcode: Arc::default(),
            clock,
        };
        let app = Router::new()
            .route("/robot/send", post(dingtalk))
            .route("/cgi-bin/webhook/send", post(wecom))
            .with_state(robot.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (robot, url)
    }

    fn answer(&self, body: &[u8]) -> String {
        let code = *self.errcode.lock().unwrap();
        if code == 0 {
            self.received
                .lock()
                .unwrap()
                .push(serde_json::from_slice(body).unwrap());
            json!({"errcode": 0, "errmsg": "ok"}).to_string()
        } else {
            json!({"errcode": code, "errmsg": "send too fast"}).to_string()
        }
    }
}

fn query_param<'a>(q: &'a str, k: &str) -> Option<&'a str> {
    q.split('&').find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
}

/// DingTalk's 加签 check: `timestamp` within an hour, `sign` the URL-encoded
/// base64(HmacSHA256(secret, timestamp + "\n" + secret)).
async fn dingtalk(State(robot): State<Robot>, RawQuery(q): RawQuery, body: Bytes) -> String {
    let q = q.unwrap_or_default();
    let ts: i64 = query_param(&q, "timestamp")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let sign = query_param(&q, "sign").unwrap_or("");
    let want = base64::engine::general_purpose::STANDARD.encode(hmac256(
        DING_SECRET.as_bytes(),
        format!("{ts}\n{DING_SECRET}").as_bytes(),
    ));
    let decoded = percent_encoding::percent_decode_str(sign).decode_utf8_lossy();
    if query_param(&q, "access_token") != Some(DING_TOKEN)
        || (robot.clock.now_ms() - ts).abs() > 3_600_000
        || decoded != want
    {
        robot.refused.fetch_add(1, Ordering::SeqCst);
        return json!({"errcode": 310000, "errmsg": "sign not match"}).to_string();
    }
    robot.answer(&body)
}

async fn wecom(State(robot): State<Robot>, RawQuery(q): RawQuery, body: Bytes) -> String {
    if query_param(&q.unwrap_or_default(), "key") != Some(WECOM_KEY) {
        robot.refused.fetch_add(1, Ordering::SeqCst);
        return json!({"errcode": 93000, "errmsg": "invalid webhook url"}).to_string();
    }
    robot.answer(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_through_a_signed_dingtalk_robot_mentions_the_phone() {
    env();
    let clock = Clock::starting_at(t0());
    let (robot, url) = Robot::start(clock.clone()).await;
    let extra = format!(
        r#"
[channels]
sms = ["ding"]
[gateways.ding]
kind = "webhook"
preset = "dingtalk"
endpoint = "{url}/robot/send?access_token={DING_TOKEN}"
secret_env = "JY_TEST_DING_SECRET"
{POLICY}"#
    );
    let app = spawn_at(Db::Sqlite, &extra, clock).await.unwrap();
    app.without_duty_rosters().await;
    let (status, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(status, 202, "{body}");
    wait_scalar(
        &app,
        "SELECT COUNT(*) FROM attempts WHERE gateway = 'ding' AND result = 'sent'",
        3,
    )
    .await;
    assert_eq!(robot.refused.load(Ordering::SeqCst), 0);
    let got = robot.received.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    let mut mentioned: Vec<String> = got
        .iter()
        .map(|b| {
            assert_eq!(b["msgtype"], "text");
            let m = b["at"]["atMobiles"][0].as_str().unwrap().to_string();
            let content = b["text"]["content"].as_str().unwrap();
            assert!(
                content.contains("暴雨红色预警") && content.contains(&format!("@{m}")),
                "{b}"
            );
            format!("+86{m}")
        })
        .collect();
    mentioned.sort();
    assert_eq!(mentioned, PHONES);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_robot_and_a_dingtalk_rate_limit() {
    env();
    let clock = Clock::starting_at(t0());
    let (robot, url) = Robot::start(clock.clone()).await;
    let toml = format!(
        r#"
[gateways.wx]
kind = "webhook"
preset = "wecom"
endpoint = "{url}/cgi-bin/webhook/send?key={WECOM_KEY}"
[gateways.ding]
kind = "webhook"
preset = "dingtalk"
endpoint = "{url}/robot/send?access_token={DING_TOKEN}"
secret_env = "JY_TEST_DING_SECRET"
[gateways.unsigned]
kind = "webhook"
preset = "dingtalk"
endpoint = "{url}/robot/send?access_token={DING_TOKEN}"
"#
    );
    let gws = Gateways::build(&Settings::from_toml(&toml).unwrap(), &clock).unwrap();
    let msg = outgoing("c1-j1", "+8613800000000");
    gws.get("wx").unwrap().send(&msg).await.unwrap();
    let got = robot.received.lock().unwrap().clone();
    assert_eq!(got[0]["text"]["mentioned_mobile_list"], json!(["13800000000"]));
    assert_eq!(got[0]["text"]["content"], msg.text);
    // A robot that needs the signature refuses the unsigned URL: permanent.
    assert!(matches!(
        gws.get("unsigned").unwrap().send(&msg).await,
        Err(SendError::Permanent { .. })
    ));
    assert_eq!(robot.refused.load(Ordering::SeqCst), 1);
    *robot.errcode.lock().unwrap() = 130101;
    assert!(matches!(
        gws.get("ding").unwrap().send(&msg).await,
        Err(SendError::Capped { .. })
    ));
}
