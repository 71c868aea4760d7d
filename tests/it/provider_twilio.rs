//! Twilio end to end: a fake api.twilio.com on loopback that checks Basic auth and the form
//! fields as Twilio would and answers with Twilio's own bodies (a message or call resource,
//! an error body), and Twilio's callbacks to the daemon signed with X-Twilio-Signature,
//! computed here independently of the daemon's code over the URL the daemon is configured
//! with (`http.public_url`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use hmac::{Hmac, Mac};

use crate::helpers::{demo_cap, spawn, Db, TestApp, FEED};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-test-auth-token-0123";
const TOKEN_ENV: &str = "JIAOYING_TEST_TWILIO_TOKEN";
const FROM: &str = "+15005550006";
const PUBLIC: &str = "https://jy.example";

/// A form as received, in order.
type Form = Vec<(String, String)>;

fn get<'a>(f: &'a Form, k: &str) -> Option<&'a str> {
    f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn parse_form(s: &str) -> Form {
    let d = |p: &str| {
        percent_encoding::percent_decode_str(&p.replace('+', " "))
            .decode_utf8()
            .unwrap()
            .into_owned()
    };
    s.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (d(k), d(v))
        })
        .collect()
}

pub(crate) fn encode_form(p: &[(&str, &str)]) -> String {
    let e =
        |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    p.iter()
        .map(|(k, v)| format!("{}={}", e(k), e(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// X-Twilio-Signature as Twilio computes it (twilio.com/docs/usage/webhooks/webhooks-security):
/// the URL, then each POST parameter sorted by name as name + value; HMAC-SHA1, Base64.
fn twilio_signature(url: &str, params: &[(&str, &str)]) -> String {
    twilio_signature_with(TOKEN, url, params)
}

/// As [`twilio_signature`], with the auth token given (another test's gateway).
pub(crate) fn twilio_signature_with(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut s = url.to_string();
    for (k, v) in sorted {
        s.push_str(k);
        s.push_str(v);
    }
    let mut m = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    m.update(s.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

/// One create request the fake received.
#[derive(Clone, Debug)]
struct Created {
    resource: String,
    form: Form,
    sid: String,
}

#[derive(Clone, Default)]
struct FakeTwilio {
    received: Arc<Mutex<Vec<Created>>>,
    bad_auth: Arc<AtomicUsize>,
    /// Answer Messages.json with Twilio error bodies: 21211 to even numbers, 21611 to odd.
    errors: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeTwilio {
    async fn start() -> (FakeTwilio, String) {
        let fake = FakeTwilio::default();
        let app = Router::new()
            .route("/2010-04-01/Accounts/{sid}/{resource}", post(create))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, url)
    }

    fn all(&self, resource: &str) -> Vec<Created> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.resource == resource)
            .cloned()
            .collect()
    }

    async fn wait_for(&self, resource: &str, n: usize) -> Vec<Created> {
        let start = Instant::now();
        loop {
            let got = self.all(resource);
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for {n} {resource}; have {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn create(
    State(fake): State<FakeTwilio>,
    Path((sid, resource)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let json = [("content-type", "application/json; charset=utf-8")];
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}"))
    );
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let form_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if sid != ACCOUNT || auth != Some(want.as_str()) || !form_type {
        fake.bad_auth.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            json,
            r#"{"code": 20003, "detail": "Your AccountSid or AuthToken was incorrect.", "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}"#.into(),
        );
    }
    let form = parse_form(std::str::from_utf8(&body).unwrap());
    let to = get(&form, "To").unwrap_or_default().to_string();
    if resource == "Messages.json" && fake.errors.load(Ordering::SeqCst) {
        let odd = to.bytes().last().is_some_and(|b| (b - b'0') % 2 == 1);
        let body = if odd {
            r#"{"code": 21611, "message": "This 'From' number has exceeded the maximum number of queued messages", "more_info": "https://www.twilio.com/docs/errors/21611", "status": 400}"#.to_string()
        } else {
            format!(
                r#"{{"code": 21211, "message": "The 'To' number {to} is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}}"#
            )
        };
        return (StatusCode::BAD_REQUEST, json, body);
    }
    let mut all = fake.received.lock().unwrap();
    let (prefix, kind) = match resource.as_str() {
        "Messages.json" => ("SM", "Messages"),
        "Calls.json" => ("CA", "Calls"),
        _ => return (StatusCode::NOT_FOUND, json, r#"{"code": 20404, "message": "The requested resource was not found", "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404}"#.into()),
    };
    let sid = format!("{prefix}{:032x}", all.len() + 1);
    let now = "Wed, 15 Jul 2026 02:00:00 +0000";
    let resp = serde_json::json!({
        "account_sid": ACCOUNT,
        "api_version": "2010-04-01",
        "body": get(&form, "Body"),
        "date_created": now,
        "date_sent": null,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": get(&form, "From"),
        "messaging_service_sid": null,
        "num_media": "0",
        "num_segments": "1",
        "price": null,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "to": to,
        "uri": format!("/2010-04-01/Accounts/{ACCOUNT}/{kind}/{sid}.json"),
    });
    all.push(Created { resource, form, sid });
    (StatusCode::CREATED, json, resp.to_string())
}

const POLICY: &str = r#"
[[policy]]
name = "red"
colours = ["red"]
hazards = ["*"]
roles = ["county_duty", "township_leader", "township_duty", "village_leader"]
channels = ["CHANNEL"]
deadline = "1h"
ladder = ["backup"]
evacuation = false
"#;

/// The daemon with `tw` (SMS) and `twv` (voice) at the fake, the `sms` channel going through
/// `sms_gateways`, the policy calling on `channel`.
async fn start(channel: &str, sms_gateways: &str) -> (TestApp, FakeTwilio, i64) {
    start_with(channel, sms_gateways, false).await
}

/// As [`start`]; `refuse`: the fake answers every Message with an error body.
async fn start_with(channel: &str, sms_gateways: &str, refuse: bool) -> (TestApp, FakeTwilio, i64) {
    std::env::set_var(TOKEN_ENV, TOKEN);
    let (fake, url) = FakeTwilio::start().await;
    fake.errors.store(refuse, Ordering::SeqCst);
    let extra = format!(
        r#"
[http]
public_url = "{PUBLIC}"
[channels]
sms = {sms_gateways}
voice = ["twv"]
[gateways.tw]
kind = "twilio-sms"
endpoint = "{url}"
account_sid = "{ACCOUNT}"
auth_token_env = "{TOKEN_ENV}"
from = "{FROM}"
[gateways.twv]
kind = "twilio-voice"
endpoint = "{url}"
account_sid = "{ACCOUNT}"
auth_token_env = "{TOKEN_ENV}"
from = "{FROM}"
{}"#,
        POLICY.replace("CHANNEL", channel)
    );
    let app = spawn(Db::Sqlite, &extra).await.unwrap();
    let (status, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(status, 202, "{body}");
    let callouts = body["incidents"][0]["callouts"].as_i64().unwrap();
    assert!(callouts > 100, "{body}");
    (app, fake, callouts)
}

/// Posts a Twilio callback to `path` (with its query) signed over `signed_url`, or unsigned.
async fn callback(
    app: &TestApp,
    path: &str,
    params: &[(&str, &str)],
    signature: Option<String>,
) -> (u16, String) {
    let mut req = app
        .http
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(params));
    if let Some(s) = signature {
        req = req.header("x-twilio-signature", s);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// As [`callback`], signed over the public URL of `path`.
async fn signed(app: &TestApp, path: &str, params: &[(&str, &str)]) -> (u16, String) {
    let sig = twilio_signature(&format!("{PUBLIC}{path}"), params);
    callback(app, path, params, Some(sig)).await
}

/// Waits until `sql` counts `want`, or panics after a minute.
async fn settled(app: &TestApp, sql: &str, want: i64) {
    let start = Instant::now();
    loop {
        let n = app.scalar(sql).await;
        if n == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {want} from {sql}; have {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text(app: &TestApp, sql: &str) -> String {
    sqlx::query_scalar::<_, String>(sql)
        .fetch_one(app.db())
        .await
        .unwrap()
}

/// The path and query of a URL we gave Twilio (`https://jy.example/hooks/…`).
fn path_of(url: &str) -> &str {
    url.strip_prefix(PUBLIC).expect("a hook URL on the public URL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_messages_inbound_and_status() {
    let (app, fake, callouts) = start("sms", r#"["tw"]"#).await;

    // 1. One Message per call-out, with Basic auth, To/From/Body and a status callback URL.
    let msgs = fake.wait_for("Messages.json", callouts as usize).await;
    assert_eq!(msgs.len() as i64, callouts);
    assert_eq!(fake.bad_auth.load(Ordering::SeqCst), 0);
    for m in &msgs {
        assert!(get(&m.form, "To").unwrap().starts_with("+86"), "{m:?}");
        assert_eq!(get(&m.form, "From"), Some(FROM));
        assert!(get(&m.form, "Body").unwrap().contains("暴雨红色预警"), "{m:?}");
        assert!(get(&m.form, "StatusCallback")
            .unwrap()
            .starts_with("https://jy.example/hooks/tw/status?ref=c"));
    }
    // The attempts are written once the batch is sent: the callbacks below need them.
    settled(
        &app,
        "SELECT COUNT(*) FROM attempts WHERE gateway = 'tw' AND result = 'sent' AND gateway_ref LIKE 'SM%'",
        callouts,
    )
    .await;

    // 2. An inbound SMS, signed: acknowledges; again: replayed; unsigned or mis-signed: 401.
    let phone = get(&msgs[0].form, "To").unwrap().to_string();
    let inbound: Vec<(&str, &str)> = vec![
        ("ToCountry", "US"),
        ("SmsMessageSid", "SM00000000000000000000000000000001"),
        ("NumMedia", "0"),
        ("SmsSid", "SM00000000000000000000000000000001"),
        ("Body", "收到"),
        ("To", FROM),
        ("NumSegments", "1"),
        ("MessageSid", "SM00000000000000000000000000000001"),
        ("AccountSid", ACCOUNT),
        ("From", &phone),
        ("ApiVersion", "2010-04-01"),
    ];
    let before = app.scalar("SELECT COUNT(*) FROM inbound").await;
    let (status, body) = callback(&app, "/hooks/tw/inbound", &inbound, None).await;
    assert_eq!(status, 401, "{body}");
    let wrong = twilio_signature("https://jy.example/hooks/tw/inbound", &inbound[..10]);
    let (status, _) = callback(&app, "/hooks/tw/inbound", &inbound, Some(wrong)).await;
    assert_eq!(status, 401);
    let other_host = twilio_signature("https://evil.example/hooks/tw/inbound", &inbound);
    let (status, _) = callback(&app, "/hooks/tw/inbound", &inbound, Some(other_host)).await;
    assert_eq!(status, 401);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM inbound").await, before);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM acks").await, 0);

    let (status, body) = signed(&app, "/hooks/tw/inbound", &inbound).await;
    assert_eq!((status, body.contains("<Response/>")), (200, true), "{body}");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM acks").await, 1);
    assert_eq!(
        text(&app, "SELECT outcome FROM inbound ORDER BY id DESC LIMIT 1").await,
        "ack"
    );
    let (status, _) = signed(&app, "/hooks/tw/inbound", &inbound).await;
    assert_eq!(status, 200);
    assert_eq!(
        text(&app, "SELECT outcome FROM inbound ORDER BY id DESC LIMIT 1").await,
        "replayed"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM acks").await, 1);

    // The port variant: Twilio signed the URL with :443, the daemon knows it without.
    let phone2 = get(&msgs[1].form, "To").unwrap().to_string();
    let mut second = inbound.clone();
    for (k, v) in second.iter_mut() {
        match *k {
            "From" => *v = &phone2,
            "MessageSid" | "SmsSid" | "SmsMessageSid" => *v = "SM00000000000000000000000000000002",
            _ => {}
        }
    }
    let sig = twilio_signature("https://jy.example:443/hooks/tw/inbound", &second);
    let (status, body) = callback(&app, "/hooks/tw/inbound", &second, Some(sig)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM acks").await, 2);

    // 3. A status callback `delivered` marks delivered and answers nothing.
    let m = &msgs[2];
    let path = path_of(get(&m.form, "StatusCallback").unwrap()).to_string();
    let status_params = [
        ("SmsSid", m.sid.as_str()),
        ("SmsStatus", "delivered"),
        ("MessageStatus", "delivered"),
        ("To", get(&m.form, "To").unwrap()),
        ("MessageSid", m.sid.as_str()),
        ("AccountSid", ACCOUNT),
        ("From", FROM),
        ("ApiVersion", "2010-04-01"),
    ];
    let delivered = || app.scalar("SELECT COUNT(*) FROM callouts WHERE delivered_at IS NOT NULL");
    assert_eq!(delivered().await, 0);
    let (status, _) = callback(&app, &path, &status_params, None).await;
    assert_eq!(status, 401);
    let (status, body) = signed(&app, &path, &status_params).await;
    assert_eq!((status, body.contains("<Response/>")), (200, true), "{body}");
    assert_eq!(delivered().await, 1);
    assert_eq!(
        text(&app, "SELECT outcome FROM inbound ORDER BY id DESC LIMIT 1").await,
        "delivered"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM acks").await, 2);
    let (status, _) = signed(&app, &path, &status_params).await;
    assert_eq!(status, 200);
    assert_eq!(
        text(&app, "SELECT outcome FROM inbound ORDER BY id DESC LIMIT 1").await,
        "replayed"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_call_gathers_a_key() {
    let (app, fake, callouts) = start("voice", r#"["tw"]"#).await;
    // A contact's own channel list may leave voice out (a few in the demo roster).
    let callable = app
        .scalar(
            "SELECT COUNT(*) FROM callouts c JOIN contacts p ON p.id = c.contact_id \
             WHERE p.phone IS NOT NULL AND (p.channels = '' OR p.channels LIKE '%voice%')",
        )
        .await;
    assert!(callable > 100);
    let calls = fake.wait_for("Calls.json", callable as usize).await;
    assert_eq!(calls.len() as i64, callable);
    settled(
        &app,
        "SELECT COUNT(*) FROM attempts WHERE gateway = 'twv' AND result = 'sent' AND gateway_ref LIKE 'CA%'",
        callable,
    )
    .await;
    assert_eq!(fake.bad_auth.load(Ordering::SeqCst), 0);
    // Those few have their SMS.
    let sms = fake
        .wait_for("Messages.json", (callouts - callable) as usize)
        .await;
    assert_eq!(sms.len() as i64, callouts - callable);
    for c in &calls {
        let twiml = get(&c.form, "Twiml").unwrap();
        assert!(twiml.starts_with(
            "<Response><Gather input=\"dtmf\" numDigits=\"1\" timeout=\"8\" action=\"https://jy.example/hooks/twv/gather?ref=c"
        ), "{twiml}");
        assert!(
            twiml.contains("确认请按1。</Say></Gather>") && !twiml.contains("/a/"),
            "{twiml}"
        );
        assert!(twiml.chars().count() <= 4000);
        assert_eq!(get(&c.form, "From"), Some(FROM));
        assert_eq!(get(&c.form, "StatusCallbackEvent"), Some("completed"));
        assert_eq!(get(&c.form, "Timeout"), Some("30"));
        assert!(get(&c.form, "StatusCallback")
            .unwrap()
            .starts_with("https://jy.example/hooks/twv/call-status?ref=c"));
    }
    let action = |c: &Created| {
        let twiml = get(&c.form, "Twiml").unwrap();
        let at = twiml.find("action=\"").unwrap() + 8;
        let url = &twiml[at..at + twiml[at..].find('"').unwrap()];
        path_of(url).replace("&amp;", "&")
    };

    // Digits=1, signed: answers, and Twilio is told 已确认.
    let c = &calls[0];
    let to = get(&c.form, "To").unwrap();
    let gather = |sid: &'static str, digits: &'static str| {
        vec![
            ("AccountSid", ACCOUNT),
            ("CallSid", sid),
            ("CallStatus", "in-progress"),
            ("Digits", digits),
            ("Direction", "outbound-api"),
            ("From", FROM),
            ("To", to),
            ("ApiVersion", "2010-04-01"),
        ]
    };
    let sid0: &'static str = Box::leak(c.sid.clone().into_boxed_str());
    let (status, _) = callback(&app, &action(c), &gather(sid0, "1"), None).await;
    assert_eq!(status, 401);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM acks").await, 0);
    let (status, body) = signed(&app, &action(c), &gather(sid0, "1")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<Say language=\"zh-CN\">已确认收到，谢谢。</Say>"),
        "{body}"
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM acks WHERE method = 'voice'")
            .await,
        1
    );

    // Digits=2 on another call: no answer, no 已确认 (asked once more).
    let c = &calls[1];
    let sid1: &'static str = Box::leak(c.sid.clone().into_boxed_str());
    let to1 = get(&c.form, "To").unwrap();
    let mut two = gather(sid1, "2");
    two[6].1 = to1;
    let (status, body) = signed(&app, &action(c), &two).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("已确认") && body.contains("<Gather"), "{body}");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM acks").await, 1);
    assert_eq!(
        text(&app, "SELECT outcome FROM inbound ORDER BY id DESC LIMIT 1").await,
        "other-key"
    );

    // The end of a call nobody answered: not reached, nothing answered.
    let c = &calls[2];
    let path = path_of(get(&c.form, "StatusCallback").unwrap()).to_string();
    let params = [
        ("AccountSid", ACCOUNT),
        ("CallSid", c.sid.as_str()),
        ("CallStatus", "no-answer"),
        ("From", FROM),
        ("To", get(&c.form, "To").unwrap()),
        ("ApiVersion", "2010-04-01"),
    ];
    let (status, body) = signed(&app, &path, &params).await;
    assert_eq!((status, body.as_str()), (200, "<Response/>"));
    assert_eq!(
        text(&app, "SELECT outcome FROM inbound ORDER BY id DESC LIMIT 1").await,
        "not-reached"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM acks").await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_errors_are_permanent_or_capped_and_fail_over() {
    // Every Message is refused, 21211 or 21611 by the number; `fake` (generic) is next.
    let (app, fake, callouts) = start_with("sms", r#"["tw", "fake"]"#, true).await;
    let msgs = app
        .gw
        .wait_until(60, "every message failed over to the next gateway", |m| {
            m.len() as i64 >= callouts
        })
        .await;
    assert_eq!(msgs.len() as i64, callouts);
    assert!(fake.all("Messages.json").is_empty());
    assert_eq!(fake.bad_auth.load(Ordering::SeqCst), 0);
    settled(
        &app,
        "SELECT COUNT(*) FROM attempts WHERE gateway = 'fake' AND result = 'sent'",
        callouts,
    )
    .await;
    let permanent = app
        .scalar("SELECT COUNT(*) FROM attempts WHERE gateway = 'tw' AND result = 'permanent' AND detail LIKE '%21211%'")
        .await;
    let capped = app
        .scalar("SELECT COUNT(*) FROM attempts WHERE gateway = 'tw' AND result = 'capped' AND detail LIKE '%21611%'")
        .await;
    assert!(permanent > 0 && capped > 0, "{permanent} {capped}");
    assert_eq!(permanent + capped, callouts);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM attempts WHERE gateway = 'tw'")
            .await,
        callouts,
        "a refusal is not retried on the same gateway"
    );
    app.stop().await;
}
