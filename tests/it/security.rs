//! The security matrix (issue 12 §4), generated from `http::routes::table()` so that a new
//! route cannot be left out: for every route, by its `access`, the callers that must be
//! refused are refused and the one that may is not; every POST refuses an oversized body;
//! refused requests change nothing (the ledger and the acknowledgements are counted before
//! and after). The test collects every misbehaving route and fails once, listing them all.
//! Against real incidents, the answer-token routes of the table get expired, replayed,
//! cross-call-out and closed-incident tokens (`answer_tokens`), and every configured gateway a
//! genuine reply replayed, the generic one a stale signature (`callbacks`). (Forged and
//! expired answer tokens and the generic gateway's signature are also in `bad_input.rs`.)

use std::time::Duration;

use axum::http::Method;
use jiaoying::answer::token;
use jiaoying::config::{Gateway, Role};
use jiaoying::http::routes::{table, Access};

use crate::gateway;
use crate::helpers::{demo_cap, spawn, token_in, Db, TestApp, FEED, OPERATOR, VIEWER};
use crate::login::{add_user, client, login, post_login, PASSWORD};
use crate::provider_aliyun::eventually;
use crate::provider_twilio::{encode_form, twilio_signature_with};

const MAX_BODY: usize = 20_000;

/// The API tokens the tests have, with their roles.
const TOKENS: [(&str, Role); 3] = [
    (FEED, Role::Feed),
    (OPERATOR, Role::Operator),
    (VIEWER, Role::Viewer),
];

/// Console users, one per role.
const USERS: [(&str, Role); 3] = [
    ("sec-viewer", Role::Viewer),
    ("sec-operator", Role::Operator),
    ("sec-admin", Role::Admin),
];

/// A concrete path for a route's pattern.
fn concrete(path: &str, gateway: &str, rest: &str) -> String {
    path.replace("{id}", "1")
        .replace("{token}", "not-a-token")
        .replace("{gateway}", gateway)
        .replace("{*rest}", rest)
}

/// The secrets of the matrix's provider gateways: what a genuine callback is signed or
/// tokened with.
const TW_TOKEN: &str = "sec-twilio-auth-token-0123456789";
const TW_ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const ALI_HOOK: &str = "sec-ali-hook-token-0123456789";
const TX_HOOK: &str = "sec-tx-hook-token-0123456789";

fn gateways_toml() -> String {
    for (k, v) in [
        ("JY_SEC_TW_TOKEN", TW_TOKEN),
        ("JY_SEC_ALI_ID", "sec-ali-id"),
        ("JY_SEC_ALI_SECRET", "sec-ali-secret-0123456789"),
        ("JY_SEC_ALI_HOOK", ALI_HOOK),
        ("JY_SEC_TX_ID", "sec-tx-id"),
        ("JY_SEC_TX_KEY", "sec-tx-key-0123456789abcdef"),
        ("JY_SEC_TX_HOOK", TX_HOOK),
    ] {
        std::env::set_var(k, v);
    }
    format!(
        r#"
[http]
max_body_bytes = {MAX_BODY}
[gateways.tw]
kind = "twilio-sms"
endpoint = "http://127.0.0.1:9"
account_sid = "{TW_ACCOUNT}"
auth_token_env = "JY_SEC_TW_TOKEN"
from = "+15005550006"
[gateways.ali]
kind = "aliyun-sms"
endpoint = "http://127.0.0.1:9"
access_key_id_env = "JY_SEC_ALI_ID"
access_key_secret_env = "JY_SEC_ALI_SECRET"
sign_name = "防汛叫应"
template_code = "SMS_154950909"
hook_token_env = "JY_SEC_ALI_HOOK"
[gateways.tx]
kind = "tencent-sms"
endpoint = "http://127.0.0.1:9"
region = "ap-guangzhou"
secret_id_env = "JY_SEC_TX_ID"
secret_key_env = "JY_SEC_TX_KEY"
sdk_app_id = "1400006666"
sign_name = "防汛叫应"
template_id = "1110"
template_params = ["event"]
hook_token_env = "JY_SEC_TX_HOOK"
"#
    )
}

/// What a refused request must leave as it was.
async fn state(app: &TestApp) -> (i64, i64, i64) {
    (
        app.scalar("SELECT COUNT(*) FROM ledger").await,
        app.scalar("SELECT COUNT(*) FROM acks").await,
        app.scalar("SELECT COUNT(*) FROM sessions").await,
    )
}

struct Req<'a> {
    method: &'a Method,
    path: &'a str,
    bearer: Option<&'a str>,
    cookie: Option<&'a str>,
    form: Option<Vec<(&'a str, &'a str)>>,
    body: Option<Vec<u8>>,
    content_type: &'a str,
}

impl<'a> Req<'a> {
    fn new(method: &'a Method, path: &'a str) -> Req<'a> {
        Req {
            method,
            path,
            bearer: None,
            cookie: None,
            form: None,
            body: None,
            content_type: if path.starts_with("/api/") {
                "application/json"
            } else {
                "application/x-www-form-urlencoded"
            },
        }
    }

    async fn send(self, app: &TestApp) -> reqwest::Response {
        let mut r = client().request(self.method.clone(), format!("{}{}", app.base, self.path));
        if let Some(t) = self.bearer {
            r = r.bearer_auth(t);
        }
        if let Some(c) = self.cookie {
            r = r.header("cookie", c);
        }
        if *self.method == Method::POST {
            // The roster upload is a multipart form (a file); its token travels the same way.
            const BOUNDARY: &str = "jiaoying-security-test";
            let multipart = self.path == "/roster/import" && self.body.is_none();
            r = match multipart {
                true => r.header(
                    "content-type",
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                ),
                false => r.header("content-type", self.content_type),
            };
            r = match (self.form, self.body) {
                (_, Some(b)) => r.body(b),
                (f, None) if multipart => {
                    let mut body = String::new();
                    for (k, v) in f.unwrap_or_default() {
                        body += &format!(
                            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                        );
                    }
                    body += &format!("--{BOUNDARY}--\r\n");
                    r.body(body)
                }
                (Some(f), None) => r.body(serde_urlencoded(&f)),
                (None, None) => r.body(if self.path.starts_with("/api/") { "{}" } else { "" }),
            };
        }
        r.send().await.unwrap()
    }
}

fn serde_urlencoded(f: &[(&str, &str)]) -> String {
    f.iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                k,
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

async fn matrix(db: Db) {
    let Some(app) = spawn(db, &gateways_toml()).await else {
        return;
    };
    let mut sessions = Vec::new();
    for (name, role) in USERS {
        add_user(&app, name, role).await;
    }
    for (name, role) in USERS {
        let (cookie, csrf) = login(&app, name).await;
        sessions.push((role, cookie, csrf));
    }
    // A session to let go idle: the last phase advances the clock past `session_idle`.
    let (stale_cookie, stale_csrf) = {
        let r = post_login(&app, "sec-admin", PASSWORD, "/").await;
        let c = crate::login::set_cookie(&r, "jy_session").unwrap();
        let csrf = crate::login::session_csrf(&app, &c).await;
        (c, csrf)
    };
    let mut bad: Vec<String> = Vec::new();
    let routes = table();
    let gateways = ["fake", "tw", "ali", "tx"];
    let hook_rests = [
        "inbound",
        "status",
        "sms-report",
        "sms-up",
        "wrong-token/sms-report",
        "wrong-token/status",
        "sms-report?token=wrong",
    ];

    for r in &routes {
        let m = &r.method;
        let id = format!("{} {} ({:?})", r.method, r.path, r.access);
        let path = concrete(r.path, "fake", "inbound");
        let before = state(&app).await;
        match r.access {
            // A public page opens for anyone; a public POST (the login) is judged by its own
            // tests (its CSRF refusal is a 403 by design), here only for size.
            Access::Public if *m == Method::GET => {
                let s = Req::new(m, &path).send(&app).await.status().as_u16();
                if s == 401 || s == 403 {
                    bad.push(format!("{id}: public, but {s} without credentials"));
                }
            }
            Access::Public => {}
            Access::Token(needed) => {
                let s = Req::new(m, &path).send(&app).await.status().as_u16();
                if s != 401 {
                    bad.push(format!("{id}: no token → {s}, want 401"));
                }
                let s = Req {
                    bearer: Some("unknown-token-0123456789"),
                    ..Req::new(m, &path)
                }
                .send(&app)
                .await
                .status()
                .as_u16();
                if s != 401 {
                    bad.push(format!("{id}: unknown token → {s}, want 401"));
                }
                for (token, role) in TOKENS.iter().filter(|(_, role)| !role.allows(needed)) {
                    let s = Req {
                        bearer: Some(token),
                        ..Req::new(m, &path)
                    }
                    .send(&app)
                    .await
                    .status()
                    .as_u16();
                    if s != 403 {
                        bad.push(format!("{id}: a {role:?} token → {s}, want 403"));
                    }
                }
                if state(&app).await != before {
                    bad.push(format!("{id}: a refused request changed the database"));
                }
                if let Some((token, role)) = TOKENS.iter().find(|(_, role)| role.allows(needed)) {
                    let s = Req {
                        bearer: Some(token),
                        ..Req::new(m, &path)
                    }
                    .send(&app)
                    .await
                    .status()
                    .as_u16();
                    if s == 401 || s == 403 {
                        bad.push(format!("{id}: the {role:?} token it needs → {s}"));
                    }
                }
            }
            Access::Session(needed) => {
                let r0 = Req::new(m, &path).send(&app).await;
                let s = r0.status().as_u16();
                let is_page = *m == Method::GET || *m == Method::HEAD;
                let to_login = r0
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .is_some_and(|l| l.starts_with("/login?next="));
                if is_page && !(s == 303 && to_login) {
                    bad.push(format!("{id}: no session → {s}, want 303 to /login?next="));
                }
                if !is_page && s != 401 {
                    bad.push(format!("{id}: no session → {s}, want 401"));
                }
                for (role, cookie, csrf) in sessions.iter().filter(|(role, ..)| !role.allows(needed)) {
                    let s = Req {
                        cookie: Some(cookie),
                        form: Some(vec![("_csrf", csrf)]),
                        ..Req::new(m, &path)
                    }
                    .send(&app)
                    .await
                    .status()
                    .as_u16();
                    if s != 403 {
                        bad.push(format!("{id}: a {role:?} session → {s}, want 403"));
                    }
                }
                let (role, cookie, csrf) = sessions
                    .iter()
                    .find(|(role, ..)| role.allows(needed))
                    .expect("an admin session allows everything");
                if !is_page {
                    for (what, token) in [
                        ("without _csrf", None),
                        ("with a wrong _csrf", Some("0".repeat(64))),
                    ] {
                        let s = Req {
                            cookie: Some(cookie),
                            form: Some(token.as_deref().map(|t| vec![("_csrf", t)]).unwrap_or_default()),
                            ..Req::new(m, &path)
                        }
                        .send(&app)
                        .await
                        .status()
                        .as_u16();
                        if s != 403 {
                            bad.push(format!("{id}: a {role:?} session {what} → {s}, want 403"));
                        }
                    }
                }
                if state(&app).await != before {
                    bad.push(format!("{id}: a refused request changed the database"));
                }
                // The right role with its token is let through (logout is kept for the end).
                if r.path != "/logout" {
                    let s = Req {
                        cookie: Some(cookie),
                        form: Some(vec![("_csrf", csrf)]),
                        ..Req::new(m, &path)
                    }
                    .send(&app)
                    .await
                    .status()
                    .as_u16();
                    if s == 401 || s == 403 {
                        bad.push(format!("{id}: a {role:?} session with its token → {s}"));
                    }
                }
            }
            Access::Gateway => {
                for gw in gateways {
                    for rest in hook_rests {
                        let p = concrete(r.path, gw, rest);
                        for (ct, body, sig) in [
                            (
                                "application/json",
                                r#"{"from":"+8613800000000","text":"收到"}"#,
                                None,
                            ),
                            (
                                "application/x-www-form-urlencoded",
                                "MessageSid=SM1&From=%2B8613800000000&Body=1",
                                Some(("x-twilio-signature", "bm90IGEgc2lnbmF0dXJl")),
                            ),
                            (
                                "application/json",
                                r#"{"from":"+8613800000000","text":"收到"}"#,
                                Some((jiaoying::channel::signature::SIGNATURE_HEADER, "v1=00")),
                            ),
                        ] {
                            let mut q = client()
                                .post(format!("{}{p}", app.base))
                                .header("content-type", ct)
                                .body(body);
                            if let Some((h, v)) = sig {
                                q = q.header(h, v).header(
                                    jiaoying::channel::signature::TIMESTAMP_HEADER,
                                    app.core.clock.now_secs().to_string(),
                                );
                            }
                            let s = q.send().await.unwrap().status().as_u16();
                            if (200..300).contains(&s) {
                                bad.push(format!(
                                    "POST {p}: an unsigned or mis-signed callback ({ct}) accepted with {s}"
                                ));
                            }
                        }
                    }
                }
                if state(&app).await != before {
                    bad.push(format!("{id}: refused callbacks changed the database"));
                }
            }
            Access::AnswerToken => {
                for forged in ["not-a-token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
                    let p = r.path.replace("{token}", forged);
                    let s = Req {
                        form: Some(vec![("action", "ack")]),
                        ..Req::new(m, &p)
                    }
                    .send(&app)
                    .await
                    .status()
                    .as_u16();
                    if !(400..500).contains(&s) {
                        bad.push(format!("{} {p}: a forged answer token → {s}, want 4xx", r.method));
                    }
                }
                if state(&app).await != before {
                    bad.push(format!("{id}: a forged answer token changed the database"));
                }
            }
        }

        // Oversized bodies: refused with 413 whoever sends them (with the credentials the
        // route needs, so the size is what is judged).
        if *m == Method::POST {
            let bearer = match r.access {
                Access::Token(needed) => TOKENS.iter().find(|(_, role)| role.allows(needed)).map(|t| t.0),
                _ => None,
            };
            let cookie = match r.access {
                Access::Session(_) => Some(sessions[2].1.as_str()),
                _ => None,
            };
            let s = Req {
                bearer,
                cookie,
                body: Some(vec![b'a'; MAX_BODY + 10_000]),
                ..Req::new(m, &path)
            }
            .send(&app)
            .await
            .status()
            .as_u16();
            if s != 413 {
                bad.push(format!("{id}: an oversized body → {s}, want 413"));
            }
        }
    }

    // Idle past `session_idle`: every session route refuses the stale session.
    app.advance(app.core.settings.console.session_idle + Duration::from_secs(1));
    for r in routes.iter().filter(|r| matches!(r.access, Access::Session(_))) {
        let path = concrete(r.path, "fake", "inbound");
        let s = Req {
            cookie: Some(&stale_cookie),
            form: Some(vec![("_csrf", &stale_csrf)]),
            ..Req::new(&r.method, &path)
        }
        .send(&app)
        .await
        .status()
        .as_u16();
        let want = if r.method == Method::GET { 303 } else { 401 };
        if s != want {
            bad.push(format!(
                "{} {} ({:?}): an expired session → {s}, want {want}",
                r.method, r.path, r.access
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} problems on {} routes:\n{}",
        bad.len(),
        routes.len(),
        bad.join("\n")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_who_it_must_sqlite() {
    matrix(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_who_it_must_postgres() {
    matrix(Db::Postgres).await;
}

/// The county duty officers only (three people per warning) and an hour to answer: nothing
/// escalates while the answer-token and callback cases run, so every change they see is the
/// request's own.
const FEW: &str = r#"
[[policy]]
name = "red"
colours = ["red"]
hazards = ["*"]
roles = ["county_duty"]
channels = ["sms"]
deadline = "1h"
ladder = ["backup"]
evacuation = true
"#;

/// One call-out's answer link, as its message carried it.
struct Link {
    callout: i64,
    incident: i64,
    contact: i64,
    phone: String,
    token: String,
}

/// Waits until no job is due (every send, notice and checkpoint done and committed), so that
/// a before/after count sees only what a request changed.
async fn quiet(app: &TestApp) {
    eventually(60, "no job due", || async {
        let now = app.core.clock.now_ms();
        app.scalar(&format!("SELECT COUNT(*) FROM jobs WHERE due_at <= {now}"))
            .await
            == 0
    })
    .await;
}

/// Posts `n` demo warnings, each opening an incident of its own that calls the same three
/// people, and waits until every call-out is sent and nothing is due. Returns the incidents
/// and their call-outs' links.
async fn incidents(app: &TestApp, n: usize) -> (Vec<i64>, Vec<Link>) {
    let had = app.gw.messages().len();
    let (mut ids, mut callouts) = (Vec::new(), 0);
    for _ in 0..n {
        let (s, b) = app.post_cap(&demo_cap(), FEED).await;
        assert_eq!(s, 202, "{b}");
        ids.push(b["incidents"][0]["id"].as_i64().unwrap());
        callouts += b["incidents"][0]["callouts"].as_u64().unwrap() as usize;
    }
    assert_eq!(callouts, 3 * n, "three county duty officers per warning");
    let msgs = app
        .gw
        .wait_until(60, "the call-outs", |m| m.len() >= had + callouts)
        .await;
    quiet(app).await;
    let mut links = Vec::new();
    for m in msgs[had..].iter().filter(|m| m.text.contains("/a/")) {
        let token = token_in(&m.text);
        let callout = token::verify(&app.core.token_key, &token, app.core.clock.now_secs()).unwrap();
        let of = |col: &str| format!("SELECT {col} FROM callouts WHERE id = {callout}");
        links.push(Link {
            callout,
            incident: app.scalar(&of("incident_id")).await,
            contact: app.scalar(&of("contact_id")).await,
            phone: m.to.clone(),
            token,
        });
    }
    assert_eq!(links.len(), callouts);
    (ids, links)
}

/// What any answer changes: the ledger, the acknowledgements, the evacuation counts and the
/// call-outs answered.
async fn answers(app: &TestApp) -> [i64; 4] {
    [
        app.scalar("SELECT COUNT(*) FROM ledger").await,
        app.scalar("SELECT COUNT(*) FROM acks").await,
        app.scalar("SELECT COUNT(*) FROM evacuations").await,
        app.scalar("SELECT COUNT(*) FROM callouts WHERE state = 'acknowledged'")
            .await,
    ]
}

/// One call-out as an answer would change it: its state, when it was answered (-1: never),
/// its acknowledgements and its evacuation counts.
async fn answer_of(app: &TestApp, callout: i64) -> (String, i64, i64, i64) {
    let state: String = sqlx::query_scalar("SELECT state FROM callouts WHERE id = $1")
        .bind(callout)
        .fetch_one(app.db())
        .await
        .unwrap();
    (
        state,
        app.scalar(&format!(
            "SELECT COALESCE(acked_at, -1) FROM callouts WHERE id = {callout}"
        ))
        .await,
        app.scalar(&format!("SELECT COUNT(*) FROM acks WHERE callout_id = {callout}"))
            .await,
        app.scalar(&format!(
            "SELECT COUNT(*) FROM evacuations WHERE callout_id = {callout}"
        ))
        .await,
    )
}

const ACK: [(&str, &str); 1] = [("action", "ack")];
const EVACUATION: [(&str, &str); 3] = [("action", "evacuation"), ("moved", "7"), ("threatened", "9")];

/// Answer tokens on every `AnswerToken` route of the table, against real incidents: an
/// expired token is 410 and changes nothing; a genuine one (POST) answers its own call-out and
/// nobody else's, not the same incident's other people nor the same person's call-out in
/// another incident; sent again it records no second answer; after its incident is closed it
/// records nothing and the page says the call-out is closed. A GET never changes anything.
async fn answer_tokens(db: Db) {
    let Some(app) = spawn(db, &format!("{}{FEW}", gateways_toml())).await else {
        return;
    };
    app.without_duty_rosters().await;
    let routes = table();
    let answer_routes: Vec<_> = routes
        .iter()
        .filter(|r| r.access == Access::AnswerToken)
        .collect();
    assert!(answer_routes.len() >= 2, "the answer page's GET and POST");
    let mut bad: Vec<String> = Vec::new();
    macro_rules! want {
        ($cond:expr, $($what:tt)*) => {
            if !$cond {
                bad.push(format!($($what)*));
            }
        };
    }
    for r in answer_routes {
        let m = &r.method;
        let id = format!("{} {}", r.method, r.path);
        let changes = *m != Method::GET && *m != Method::HEAD;
        let send = |token: &str, form: &[(&'static str, &'static str)]| {
            let path = r.path.replace("{token}", token);
            let form = form.to_vec();
            let app = &app;
            async move {
                let resp = Req {
                    form: Some(form),
                    ..Req::new(m, &path)
                }
                .send(app)
                .await;
                (resp.status().as_u16(), resp.text().await.unwrap())
            }
        };
        let (incs, links) = incidents(&app, 2).await;
        let a = links.iter().find(|l| l.incident == incs[0]).unwrap();
        // Among the others: the same person's call-out in the second incident, and the other
        // people's in the first.
        assert!(links
            .iter()
            .any(|l| l.incident == incs[1] && l.contact == a.contact));
        assert!(links
            .iter()
            .any(|l| l.incident == a.incident && l.contact != a.contact));

        // (a) Expired, genuinely signed: 410, nothing changes.
        let before = answers(&app).await;
        let expired = token::sign(&app.core.token_key, a.callout, app.core.clock.now_secs() - 1);
        for form in [&ACK[..], &EVACUATION[..]] {
            let (s, page) = send(&expired, form).await;
            want!(
                s == 410 && page.contains("过期"),
                "{id}: an expired token → {s}, want 410 saying 过期"
            );
        }
        want!(
            answers(&app).await == before,
            "{id}: an expired token changed the database"
        );

        // (d) A's own token with an evacuation count: A's call-out alone is answered and
        // counted; every other call-out (same incident, same person elsewhere) is as it was.
        let others: Vec<_> = links.iter().filter(|l| l.callout != a.callout).collect();
        let mut untouched = Vec::new();
        for l in &others {
            untouched.push(answer_of(&app, l.callout).await);
        }
        let (s, _) = send(&a.token, &EVACUATION).await;
        let after = answers(&app).await;
        if changes {
            want!(s == 200, "{id}: a genuine evacuation count → {s}, want 200");
            let (state, acked_at, acks, evacuations) = answer_of(&app, a.callout).await;
            want!(
                state == "acknowledged" && acked_at > 0 && acks == 1 && evacuations == 1,
                "{id}: its own call-out is {state} with {acks} acks and {evacuations} counts"
            );
            let counted = app
                .scalar(&format!(
                    "SELECT COUNT(*) FROM evacuations WHERE callout_id = {} AND incident_id = {} \
                     AND moved = 7 AND threatened = 9",
                    a.callout, a.incident
                ))
                .await;
            want!(counted == 1, "{id}: the count is not A's in A's incident");
            want!(
                after[1..] == [before[1] + 1, before[2] + 1, before[3] + 1],
                "{id}: one answer and one count anywhere, not {before:?} → {after:?}"
            );
        } else {
            want!(s == 200, "{id}: a genuine token → {s}, want 200");
            want!(after == before, "{id}: a genuine token changed the database");
        }
        for (l, was) in others.iter().zip(&untouched) {
            let now = answer_of(&app, l.callout).await;
            want!(
                &now == was,
                "{id}: A's token changed call-out {} (incident {}, {}): {was:?} → {now:?}",
                l.callout,
                l.incident,
                if l.contact == a.contact {
                    "the same person"
                } else {
                    "another person"
                }
            );
        }

        // (b) The same genuine token again: an acknowledgement records nothing at all; a count
        // sent again is a later report (SPEC §2: it supersedes) and nothing besides.
        let before = answers(&app).await;
        let a_before = answer_of(&app, a.callout).await;
        let (s, page) = send(&a.token, &ACK).await;
        want!(s == 200, "{id}: a second genuine answer → {s}, want 200");
        if changes {
            want!(
                page.contains("已经确认过"),
                "{id}: a second answer does not say it was answered already"
            );
        }
        want!(
            answers(&app).await == before,
            "{id}: a second answer changed the database"
        );
        let other_entries = "SELECT COUNT(*) FROM ledger WHERE kind <> 'evacuation.reported'";
        let others_before = app.scalar(other_entries).await;
        let (s, _) = send(&a.token, &EVACUATION).await;
        want!(s == 200, "{id}: the count sent again → {s}, want 200");
        let after = answers(&app).await;
        let (state, acked_at, acks, _) = answer_of(&app, a.callout).await;
        want!(
            (state.as_str(), acked_at, acks) == (a_before.0.as_str(), a_before.1, a_before.2),
            "{id}: the count sent again changed the answer: {a_before:?} → {state} {acked_at} {acks}"
        );
        want!(
            app.scalar(other_entries).await == others_before,
            "{id}: the count sent again wrote more than its report to the ledger"
        );
        if changes {
            want!(
                after == [before[0] + 1, before[1], before[2] + 1, before[3]],
                "{id}: the count sent again is not one later report: {before:?} → {after:?}"
            );
        } else {
            want!(after == before, "{id}: a genuine token changed the database");
        }

        // (c) The second incident closed: its links answer nothing and say so.
        let close = format!("{}/api/v1/incidents/{}/close", app.base, incs[1]);
        let resp = app.http.post(&close).bearer_auth(OPERATOR).send().await.unwrap();
        assert_eq!(resp.status(), 200, "close incident {}", incs[1]);
        quiet(&app).await;
        let before = answers(&app).await;
        for l in links.iter().filter(|l| l.incident == incs[1]) {
            let was = answer_of(&app, l.callout).await;
            for form in [&ACK[..], &EVACUATION[..]] {
                let (s, page) = send(&l.token, form).await;
                let want_status = if changes { 410 } else { 200 };
                want!(
                    s == want_status && page.contains("本次叫应已结束"),
                    "{id}: a link of a closed incident → {s}, want {want_status} saying 本次叫应已结束"
                );
                want!(
                    !page.contains("收到 / Received") && !page.contains("已确认收到"),
                    "{id}: a link of a closed incident still offers or records an answer"
                );
            }
            let now = answer_of(&app, l.callout).await;
            want!(
                now == was,
                "{id}: a link of a closed incident changed call-out {}: {was:?} → {now:?}",
                l.callout
            );
        }
        want!(
            answers(&app).await == before,
            "{id}: links of a closed incident changed the database"
        );
    }
    assert!(bad.is_empty(), "{} problems:\n{}", bad.len(), bad.join("\n"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_tokens_expired_replayed_closed_and_crossed_sqlite() {
    answer_tokens(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_tokens_expired_replayed_closed_and_crossed_postgres() {
    answer_tokens(Db::Postgres).await;
}

/// One callback request, kept so that the very same bytes can be sent again.
struct Hook {
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Hook {
    async fn send(&self, app: &TestApp) -> u16 {
        let mut q = client()
            .post(format!("{}{}", app.base, self.path))
            .body(self.body.clone());
        for (k, v) in &self.headers {
            q = q.header(*k, v);
        }
        q.send().await.unwrap().status().as_u16()
    }
}

/// A genuine reply 「收到」 from `phone` through the matrix's gateway `name`, signed or tokened
/// as its provider does it; `n` makes the provider's message id its own.
fn genuine(app: &TestApp, name: &str, phone: &str, n: usize) -> Hook {
    let now = app.core.clock.now();
    let national = phone.trim_start_matches("+86");
    let json = |path: String, body: serde_json::Value| Hook {
        path,
        headers: vec![("content-type", "application/json".into())],
        body: body.to_string().into_bytes(),
    };
    match name {
        "fake" => {
            let body = serde_json::json!({"from": phone, "text": "收到", "at": now.to_rfc3339()});
            let (body, headers) = gateway::signed(&body, now.timestamp());
            let mut headers = headers.to_vec();
            headers.push(("content-type", "application/json".into()));
            Hook {
                path: "/hooks/fake/inbound".into(),
                headers,
                body,
            }
        }
        "tw" => {
            let sid = format!("SM{n:032x}");
            let params = [
                ("MessageSid", sid.as_str()),
                ("SmsSid", sid.as_str()),
                ("AccountSid", TW_ACCOUNT),
                ("From", phone),
                ("To", "+15005550006"),
                ("Body", "收到"),
                ("NumMedia", "0"),
            ];
            let path = "/hooks/tw/inbound".to_string();
            let public = app.core.settings.http.public_url.trim_end_matches('/');
            let sig = twilio_signature_with(TW_TOKEN, &format!("{public}{path}"), &params);
            Hook {
                path,
                headers: vec![
                    ("content-type", "application/x-www-form-urlencoded".into()),
                    ("x-twilio-signature", sig),
                ],
                body: encode_form(&params).into_bytes(),
            }
        }
        "ali" => json(
            format!("/hooks/ali/{ALI_HOOK}/sms-up"),
            serde_json::json!([{"phone_number": national, "content": "收到",
                "send_time": "2026-07-15 10:01:00", "dest_code": "1234", "sequence_id": 9000 + n}]),
        ),
        "tx" => json(
            format!("/hooks/tx/{TX_HOOK}/reply"),
            serde_json::json!({"extend": "", "mobile": national, "nationcode": "86",
                "sign": "防汛叫应", "text": "收到", "time": now.timestamp()}),
        ),
        other => panic!("gateway {other}: no genuine callback for it in this test, add one"),
    }
}

/// The newest inbound row: its gateway and outcome.
async fn newest_inbound(app: &TestApp) -> (String, String) {
    sqlx::query_as("SELECT gateway, outcome FROM inbound ORDER BY id DESC LIMIT 1")
        .fetch_one(app.db())
        .await
        .unwrap()
}

/// Replayed callbacks on every gateway the matrix configures (generic, Twilio, Aliyun,
/// Tencent): a genuine reply acknowledges once; the very same request again is kept as
/// `replayed` and changes nothing else (no second answer, no ledger entry). A generic callback
/// signed with a timestamp more than five minutes off either way is refused and kept nowhere.
async fn callbacks(db: Db) {
    let Some(app) = spawn(db, &format!("{}{FEW}", gateways_toml())).await else {
        return;
    };
    app.without_duty_rosters().await;
    let (_, links) = incidents(&app, 2).await;
    let mut phones: Vec<&str> = links.iter().map(|l| l.phone.as_str()).collect();
    phones.sort();
    phones.dedup();
    assert_eq!(phones.len(), 3);
    let inbound = "SELECT COUNT(*) FROM inbound";
    let mut bad: Vec<String> = Vec::new();
    // Every gateway of the configuration that takes callbacks (the built-in loopback takes
    // none): one missing from `genuine` fails the test.
    let hooked = app
        .core
        .settings
        .gateways
        .iter()
        .filter(|(_, g)| !matches!(g, Gateway::Loopback { .. }))
        .map(|(name, _)| name)
        .collect::<Vec<_>>();
    assert!(
        hooked.len() >= 4,
        "generic, Twilio, Aliyun and Tencent: {hooked:?}"
    );
    for (n, name) in hooked.into_iter().enumerate() {
        // Three people with two call-outs each: the fourth reply answers the first person's
        // other call-out (the newest still waiting).
        let hook = genuine(&app, name, phones[n % phones.len()], n);
        let before = answers(&app).await;
        let kept = app.scalar(inbound).await;
        let s = hook.send(&app).await;
        let once = answers(&app).await;
        if s != 200 || once[1..] != [before[1] + 1, before[2], before[3] + 1] {
            bad.push(format!(
                "{name}: a genuine reply → {s}, {before:?} → {once:?}, want one answer"
            ));
        }
        let newest = newest_inbound(&app).await;
        if newest != (name.clone(), "ack".into()) || app.scalar(inbound).await != kept + 1 {
            bad.push(format!("{name}: the genuine reply was kept as {newest:?}"));
        }
        let s = hook.send(&app).await;
        let again = answers(&app).await;
        if !(200..300).contains(&s) || again != once {
            bad.push(format!(
                "{name}: the replay → {s} and changed {once:?} → {again:?}"
            ));
        }
        let newest = newest_inbound(&app).await;
        if newest != (name.clone(), "replayed".into()) || app.scalar(inbound).await != kept + 2 {
            bad.push(format!("{name}: the replay was kept as {newest:?}"));
        }
    }
    // Stale either way: a genuine signature over a timestamp just outside the window.
    let now = app.core.clock.now_secs();
    let skew = jiaoying::channel::signature::MAX_SKEW_SECS + 1;
    for ts in [now - skew, now + skew] {
        let body = serde_json::json!({"from": phones[1], "text": "转移 5"});
        let (body, headers) = gateway::signed(&body, ts);
        let hook = Hook {
            path: "/hooks/fake/inbound".into(),
            headers: headers.to_vec(),
            body,
        };
        let (before, kept) = (answers(&app).await, app.scalar(inbound).await);
        let s = hook.send(&app).await;
        if s != 401 || answers(&app).await != before || app.scalar(inbound).await != kept {
            bad.push(format!(
                "fake: a reply signed at {ts} (now {now}) → {s}, or it changed something"
            ));
        }
    }
    assert!(bad.is_empty(), "{} problems:\n{}", bad.len(), bad.join("\n"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_replayed_and_stale_change_nothing_sqlite() {
    callbacks(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_replayed_and_stale_change_nothing_postgres() {
    callbacks(Db::Postgres).await;
}

/// Phone numbers never whole in the logs (issue 12 §4): the demo binary plays a full fan-out
/// (about 2,000 call-outs, replies, escalation) with `RUST_LOG=debug`, and no number of the
/// demo roster appears in what it logged (standard error). Standard output is not judged: the
/// unreached list it prints carries numbers by design (the officer phones them).
#[test]
fn phone_numbers_are_never_whole_in_debug_logs() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jiaoying"))
        .current_dir(crate::helpers::repo())
        .env("RUST_LOG", "debug")
        .env_remove("JIAOYING_CONFIG")
        .args([
            "demo",
            "--no-serve",
            "--deadline",
            "2s",
            "--bind",
            "127.0.0.1:0",
            "--database",
        ])
        .arg(dir.path().join("demo.db"))
        .output()
        .unwrap();
    let (stdout, logs) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "demo failed: {logs}");
    assert!(logs.contains("DEBUG"), "no debug lines were logged: {logs}");
    let contacts = std::fs::read_to_string(crate::helpers::repo().join("config/demo/contacts.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(contacts.as_bytes());
    let column = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "phone")
        .unwrap();
    let phones: Vec<String> = reader
        .records()
        .flat_map(|r| {
            r.unwrap()[column]
                .split(';')
                .map(|p| p.chars().filter(char::is_ascii_digit).collect::<String>())
                .filter(|d| d.len() >= 7)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(phones.len() > 1000, "{} numbers", phones.len());
    // The run really sent: the summary counts call-outs (thousands of numbers went to the
    // gateway, every one through the code whose logging is judged).
    assert!(stdout.contains("call-outs"), "{stdout}");
    let sample = &phones[0];
    assert!(
        contacts.contains(sample.as_str()),
        "the numbers are searched as the roster writes them"
    );
    let leaked: Vec<&String> = phones.iter().filter(|p| logs.contains(p.as_str())).collect();
    assert!(
        leaked.is_empty(),
        "{} numbers whole in the logs, e.g. {:?}",
        leaked.len(),
        &leaked[..leaked.len().min(5)]
    );
}
