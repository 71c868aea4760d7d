//! Updates, cancels and drills (issue 3 item 5) on both backends: area grown, colour raised
//! and lowered, Cancel, references that arrive before what they reference, drills kept apart
//! from real warnings, System/Draft stored only. Variants of the demo warning are made by
//! string replacement; who should hear what is read from the roster CSV.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::gateway::Sent;
use crate::helpers::{repo, spawn, token_in, Db, TestApp, FEED, VIEWER};

/// Township leaders only, so that each county is a dozen people.
const POLICY: &str = r#"
[[policy]]
name = "red"
colours = ["red"]
hazards = ["*"]
roles = ["township_leader"]
channels = ["sms"]
deadline = "3s"
ladder = ["repeat"]
evacuation = true

[[policy]]
name = "orange"
colours = ["orange"]
hazards = ["*"]
roles = ["township_leader"]
channels = ["sms"]
deadline = "120s"
ladder = ["repeat"]
evacuation = true
"#;

const RONG: &str = "450921";
const LUCHUAN: &str = "450922";

/// Phones of the township leaders of these counties, from the roster CSV (the oracle).
fn leaders(counties: &[&str]) -> HashSet<String> {
    crate::flow::roster()
        .into_iter()
        .filter(|p| p.role == "township_leader" && counties.iter().any(|c| p.region.starts_with(c)))
        .map(|p| p.phone)
        .collect()
}

/// A variant of the demo warning.
struct Cap<'a> {
    id: &'a str,
    msg_type: &'a str,
    status: &'a str,
    /// `sender,identifier,sent` of the referenced messages.
    references: Vec<String>,
    red: bool,
    counties: &'a [&'a str],
    /// Seconds from now to `expires` (the demo's is six hours).
    expires_in: Option<i64>,
}

impl Cap<'_> {
    fn xml(&self, now: chrono::DateTime<chrono::Utc>) -> (Vec<u8>, String) {
        let raw = std::fs::read_to_string(repo().join("config/demo/rainstorm-red.cap.xml")).unwrap();
        let mut x = jiaoying::tools::demo::as_of_now(&raw, now)
            .replace("45090041600000_20260612023000", self.id)
            .replace(
                "<msgType>Alert</msgType>",
                &format!("<msgType>{}</msgType>", self.msg_type),
            )
            .replace(
                "<status>Actual</status>",
                &format!("<status>{}</status>", self.status),
            );
        if !self.references.is_empty() {
            x = x.replace(
                "</note>",
                &format!(
                    "</note>\n  <references>{}</references>",
                    self.references.join(" ")
                ),
            );
        }
        if !self.red {
            x = x
                .replace("红色", "橙色")
                .replace("<value>red</value>", "<value>orange</value>");
        }
        if let Some(secs) = self.expires_in {
            let at = now + chrono::Duration::seconds(secs);
            let bj = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
            let old = between(&x, "<expires>", "</expires>");
            x = x.replace(
                &old,
                &at.with_timezone(&bj)
                    .format("%Y-%m-%dT%H:%M:%S+08:00")
                    .to_string(),
            );
        }
        let (a, b) = (
            x.find("<area>").unwrap(),
            x.find("</area>").unwrap() + "</area>".len(),
        );
        let geocodes: String = self
            .counties
            .iter()
            .map(|c| format!("<geocode><valueName>GB2260</valueName><value>{c}</value></geocode>"))
            .collect();
        x.replace_range(a..b, &format!("<area><areaDesc>test</areaDesc>{geocodes}</area>"));
        let sender = between(&x, "<sender>", "</sender>");
        let sent = between(&x, "<sent>", "</sent>");
        (x.into_bytes(), format!("{sender},{},{sent}", self.id))
    }
}

fn between(s: &str, a: &str, b: &str) -> String {
    let i = s.find(a).unwrap() + a.len();
    s[i..i + s[i..].find(b).unwrap()].to_string()
}

fn alert<'a>(id: &'a str, red: bool, counties: &'a [&'a str]) -> Cap<'a> {
    Cap {
        id,
        msg_type: "Alert",
        status: "Actual",
        references: vec![],
        red,
        counties,
        expires_in: None,
    }
}

fn update<'a>(id: &'a str, reference: String, red: bool, counties: &'a [&'a str]) -> Cap<'a> {
    Cap {
        msg_type: "Update",
        references: vec![reference],
        ..alert(id, red, counties)
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", rand::random::<u32>())
}

async fn post(app: &TestApp, cap: &Cap<'_>) -> (serde_json::Value, String) {
    let (xml, reference) = cap.xml(app.core.clock.now());
    let (status, body) = app.post_cap(&xml, FEED).await;
    assert_eq!(status, 202, "{body}");
    (body, reference)
}

/// The colour of this incident, or of the only one.
async fn colour(app: &TestApp, incident: Option<i64>) -> String {
    sqlx::query_scalar("SELECT colour FROM incidents WHERE id = $1 OR $1 IS NULL ORDER BY id LIMIT 1")
        .bind(incident)
        .fetch_one(app.db())
        .await
        .unwrap()
}

/// Waits until no job is left that is due within the next minute (deadlines still running
/// would write to the ledger while it is checked).
async fn idle(app: &TestApp) {
    let soon = app.core.now() + 60_000;
    for _ in 0..300 {
        let left = app
            .scalar(&format!("SELECT COUNT(*) FROM jobs WHERE due_at < {soon}"))
            .await;
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("jobs still due after 30 s");
}

/// The queue has settled: no job is due now or claimed, so nothing more is on its way.
async fn settle(app: &TestApp, n: usize) -> Vec<Sent> {
    for i in 0.. {
        let busy = app
            .scalar(&format!(
                "SELECT COUNT(*) FROM jobs WHERE due_at <= {} OR claimed_by IS NOT NULL",
                app.core.now()
            ))
            .await;
        if busy == 0 {
            break;
        }
        assert!(i < 600, "the queue did not settle in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let msgs = app.gw.messages();
    assert_eq!(msgs.len(), n, "{:#?}", &msgs[n.min(msgs.len())..]);
    msgs
}

macro_rules! both {
    ($body:ident: $($name:ident => $db:expr),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some(app) = spawn($db, POLICY).await else {
                eprintln!("JIAOYING_PG_URL not set: PostgreSQL test skipped");
                return;
            };
            $body(&app).await;
            idle(&app).await;
            match jiaoying::store::ledger::verify(&app.core.store).await.unwrap() {
                Ok(n) => assert!(n > 0),
                Err(b) => panic!("ledger broken: {b}"),
            }
            app.stop().await;
        }
    )*};
}

both!(area_grown: area_grown_sqlite => Db::Sqlite, area_grown_postgres => Db::Postgres);
both!(colour_raised: colour_raised_sqlite => Db::Sqlite, colour_raised_postgres => Db::Postgres);
both!(colour_lowered: colour_lowered_sqlite => Db::Sqlite, colour_lowered_postgres => Db::Postgres);
both!(cancel: cancel_sqlite => Db::Sqlite, cancel_postgres => Db::Postgres);
both!(cancel_first: cancel_first_sqlite => Db::Sqlite, cancel_first_postgres => Db::Postgres);
both!(update_first: update_first_sqlite => Db::Sqlite, update_first_postgres => Db::Postgres);
both!(drill: drill_sqlite => Db::Sqlite, drill_postgres => Db::Postgres);
both!(not_mixed: not_mixed_sqlite => Db::Sqlite, not_mixed_postgres => Db::Postgres);
both!(expiry: expiry_sqlite => Db::Sqlite, expiry_postgres => Db::Postgres);
both!(stored_only: stored_only_sqlite => Db::Sqlite, stored_only_postgres => Db::Postgres);

/// Area grown → call-outs only for the newly covered people, in the same incident.
async fn area_grown(app: &TestApp) {
    let (rong, both) = (leaders(&[RONG]), leaders(&[RONG, LUCHUAN]));
    assert!(rong.len() >= 10 && both.len() > rong.len());
    let id = unique("grow");
    let (first, original) = post(app, &alert(&id, false, &[RONG])).await;
    let incident = first["incidents"][0]["id"].as_i64().unwrap();
    app.gw
        .wait_until(30, "the first call-outs", |m| m.len() >= rong.len())
        .await;

    let uid = unique("grow_upd");
    let update = update(&uid, original, false, &[RONG, LUCHUAN]);
    let (body, _) = post(app, &update).await;
    assert_eq!(body["incidents"][0]["id"].as_i64(), Some(incident), "{body}");
    assert_eq!(
        body["incidents"][0]["callouts"].as_u64().unwrap() as usize,
        both.len() - rong.len()
    );
    app.gw
        .wait_until(30, "the new people's call-outs", |m| m.len() >= both.len())
        .await;
    let msgs = settle(app, both.len()).await;
    let later: HashSet<String> = msgs[rong.len()..].iter().map(|m| m.to.clone()).collect();
    let want: HashSet<String> = both.difference(&rong).cloned().collect();
    assert_eq!(later, want, "only the newly covered people hear of the update");
    assert_eq!(
        app.scalar("SELECT COUNT(DISTINCT incident_id) FROM callouts")
            .await,
        1
    );
}

/// Colour raised → everyone already called is called again, marked 升级, with a new deadline;
/// an earlier answer stays in the record; an unanswered one escalates on the new deadline.
async fn colour_raised(app: &TestApp) {
    let rong = leaders(&[RONG]);
    let n = rong.len();
    let id = unique("raise");
    let (first, original) = post(app, &alert(&id, false, &[RONG])).await;
    let code = first["incidents"][0]["code"].as_str().unwrap().to_string();
    let msgs = app
        .gw
        .wait_until(30, "the orange call-outs", |m| m.len() >= n)
        .await;
    let answered = msgs[0].to.clone();
    let (_, out) = app.reply(&answered, "收到").await;
    assert_eq!(out["outcome"], "ack", "{out}");
    let old_ack = out["callout_id"].as_i64().unwrap();

    let before = app.core.now();
    let uid = unique("raise_upd");
    let update = update(&uid, original, true, &[RONG]);
    let (body, _) = post(app, &update).await;
    assert_eq!(
        body["incidents"][0]["callouts"].as_u64().unwrap() as usize,
        n,
        "{body}"
    );
    let msgs = app
        .gw
        .wait_until(30, "the upgraded call-outs", |m| m.len() >= 2 * n)
        .await;
    let upgraded: Vec<&Sent> = msgs[n..2 * n].iter().collect();
    let to: HashSet<String> = upgraded.iter().map(|m| m.to.clone()).collect();
    assert_eq!(to, rong, "everyone already called, the one who answered too");
    for m in &upgraded {
        assert!(m.text.contains("【升级】暴雨橙色→红色预警"), "{}", m.text);
        assert!(m.text.contains(&code), "{}", m.text);
    }
    // New deadlines from the red policy (3 s), the old answer kept.
    let new_deadlines: Vec<i64> =
        sqlx::query_scalar("SELECT deadline_at FROM callouts WHERE upgrade IS NOT NULL")
            .fetch_all(app.db())
            .await
            .unwrap();
    assert_eq!(new_deadlines.len(), n);
    assert!(new_deadlines
        .iter()
        .all(|d| *d >= before + 3000 && *d < before + 60_000));
    let state: String = sqlx::query_scalar("SELECT state FROM callouts WHERE id = $1")
        .bind(old_ack)
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(state, "acknowledged");
    // The answer to the new colour goes to the new call-out.
    let (_, out) = app.reply(&answered, "1").await;
    assert_eq!(out["outcome"], "ack", "{out}");
    assert_ne!(out["callout_id"].as_i64().unwrap(), old_ack);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM acks").await, 2);

    // A link from the orange message now shows and answers the upgraded call-out.
    let (by_link, old_token) = msgs[..n]
        .iter()
        .find(|m| m.to != answered)
        .map(|m| (m.to.clone(), token_in(&m.text)))
        .unwrap();
    let url = format!("{}/a/{old_token}", app.base);
    let page = app.http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("【升级】暴雨橙色→红色预警"), "{page}");
    let r = app
        .http
        .post(&url)
        .form(&[("action", "ack")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let acked_upgrade = app
        .scalar("SELECT COUNT(*) FROM callouts WHERE upgrade IS NOT NULL AND state = 'acknowledged'")
        .await;
    assert_eq!(
        acked_upgrade, 2,
        "the answer by the old link counts for the upgraded call-out"
    );

    // The silent ones are called again when the new deadline passes (ladder: repeat).
    let silent = rong
        .iter()
        .find(|p| **p != answered && **p != by_link)
        .unwrap()
        .clone();
    let msgs = app
        .gw
        .wait_until(30, "a repeat on the new deadline", |m| {
            m.iter().filter(|s| s.to == silent).count() >= 3
        })
        .await;
    assert!(
        !msgs
            .iter()
            .skip(2 * n)
            .any(|m| m.to == answered || m.to == by_link),
        "the answered ones are not repeated"
    );
    assert_eq!(colour(app, None).await, "red");
}

/// Colour lowered → an information message to everyone called, no new call-out or deadline.
async fn colour_lowered(app: &TestApp) {
    let rong = leaders(&[RONG]);
    let n = rong.len();
    let id = unique("lower");
    let (_, original) = post(app, &alert(&id, true, &[RONG])).await;
    app.gw.wait_until(30, "the red call-outs", |m| m.len() >= n).await;
    let deadlines = app
        .scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'deadline'")
        .await;

    let uid = unique("lower_upd");
    let update = update(&uid, original, false, &[RONG]);
    let (body, _) = post(app, &update).await;
    assert_eq!(body["incidents"][0]["callouts"].as_u64(), Some(0), "{body}");
    app.gw
        .wait_until(30, "the downgrade notices", |m| m.len() >= 2 * n)
        .await;
    let msgs = settle(app, 2 * n).await;
    for m in &msgs[n..] {
        assert!(m.text.contains("【降级】暴雨红色→橙色预警"), "{}", m.text);
        assert!(
            !m.text.contains("/a/") && m.text.contains("无需回复"),
            "{}",
            m.text
        );
    }
    let to: HashSet<String> = msgs[n..].iter().map(|m| m.to.clone()).collect();
    assert_eq!(to, rong);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM callouts").await as usize, n);
    assert!(
        app.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'deadline'")
            .await
            <= deadlines,
        "no new deadline"
    );
}

/// Cancel → 解除 to everyone called, pending call-outs and escalations gone.
async fn cancel(app: &TestApp) {
    let rong = leaders(&[RONG]);
    let n = rong.len();
    let id = unique("cancel");
    let (first, original) = post(app, &alert(&id, false, &[RONG])).await;
    let incident = first["incidents"][0]["id"].as_i64().unwrap();
    let msgs = app.gw.wait_until(30, "the call-outs", |m| m.len() >= n).await;
    let (_, out) = app.reply(&msgs[0].to, "收到").await;
    assert_eq!(out["outcome"], "ack", "{out}");

    let cid = unique("cancel_msg");
    let cancel = Cap {
        msg_type: "Cancel",
        references: vec![original],
        ..alert(&cid, false, &[RONG])
    };
    let (body, _) = post(app, &cancel).await;
    assert_eq!(body["incidents"][0]["id"].as_i64(), Some(incident), "{body}");
    app.gw
        .wait_until(30, "the stand-downs", |m| m.len() >= 2 * n)
        .await;
    let msgs = settle(app, 2 * n).await;
    let to: HashSet<String> = msgs[n..]
        .iter()
        .filter(|m| m.text.contains("解除"))
        .map(|m| m.to.clone())
        .collect();
    assert_eq!(to, rong);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM jobs").await,
        0,
        "nothing left to send or escalate"
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM callouts WHERE state = 'cancelled'")
            .await as usize,
        n - 1
    );
    let (_, inc) = app.get(&format!("/api/v1/incidents/{incident}"), VIEWER).await;
    assert_eq!(inc["incident"]["state"], "closed", "{inc}");
}

/// A Cancel that arrives before its warning: the warning, arriving later, calls nobody.
async fn cancel_first(app: &TestApp) {
    let id = unique("late_original");
    let original = alert(&id, true, &[RONG]);
    let (xml, reference) = original.xml(app.core.clock.now());
    let cid = unique("early_cancel");
    let cancel = Cap {
        msg_type: "Cancel",
        references: vec![reference],
        ..alert(&cid, true, &[RONG])
    };
    let (body, _) = post(app, &cancel).await;
    assert!(body["note"].as_str().unwrap().contains("waiting"), "{body}");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM warning_refs WHERE resolved_at IS NULL")
            .await,
        1
    );

    let (status, body) = app.post_cap(&xml, FEED).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["incidents"][0]["callouts"].as_u64(), Some(0), "{body}");
    settle(app, 0).await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM callouts").await, 0);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM incidents WHERE state = 'closed'")
            .await,
        1
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM warnings WHERE incident_id IS NOT NULL")
            .await,
        2
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM warning_refs WHERE resolved_at IS NULL")
            .await,
        0
    );
}

/// An Update that arrives before its warning is applied after it: one message per person,
/// the original area's people marked 升级, the update's extra county called plainly.
async fn update_first(app: &TestApp) {
    let (rong, both) = (leaders(&[RONG]), leaders(&[RONG, LUCHUAN]));
    let id = unique("late_orange");
    let original = alert(&id, false, &[RONG]);
    let (xml, reference) = original.xml(app.core.clock.now());
    let uid = unique("early_update");
    let update = update(&uid, reference, true, &[RONG, LUCHUAN]);
    let (body, _) = post(app, &update).await;
    assert!(body["note"].as_str().unwrap().contains("waiting"), "{body}");
    settle(app, 0).await;

    let (status, body) = app.post_cap(&xml, FEED).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["incidents"].as_array().unwrap().len(), 1, "{body}");
    app.gw
        .wait_until(30, "the call-outs", |m| m.len() >= both.len())
        .await;
    let msgs = settle(app, both.len()).await;
    let by_to: HashMap<&str, &Sent> = msgs.iter().map(|m| (m.to.as_str(), m)).collect();
    assert_eq!(by_to.len(), both.len(), "one message per person");
    for p in &both {
        let text = &by_to[p.as_str()].text;
        assert_eq!(
            text.contains("【升级】暴雨橙色→红色预警"),
            rong.contains(p),
            "{text}"
        );
        assert!(text.contains("暴雨") && text.contains("红色预警"), "{text}");
    }
    assert_eq!(colour(app, None).await, "red");
}

/// status Exercise → a drill: 演练 in the SMS, a banner on the answer page, in the incident
/// JSON and the report.
async fn drill(app: &TestApp) {
    let rong = leaders(&[RONG]);
    let id = unique("drill");
    let (body, _) = post(
        app,
        &Cap {
            status: "Exercise",
            ..alert(&id, true, &[RONG])
        },
    )
    .await;
    let incident = body["incidents"][0]["id"].as_i64().unwrap();
    let msgs = app
        .gw
        .wait_until(30, "the drill call-outs", |m| m.len() >= rong.len())
        .await;
    assert!(
        msgs.iter().all(|m| m.text.contains("【演练】")),
        "{}",
        msgs[0].text
    );
    let page = app
        .http
        .get(format!("{}/a/{}", app.base, token_in(&msgs[0].text)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("本次为演练，不是真实预警"), "{page}");
    let (_, inc) = app.get(&format!("/api/v1/incidents/{incident}"), VIEWER).await;
    assert_eq!(inc["incident"]["drill"], true, "{inc}");
    let (_, report) = app
        .get(
            &format!("/api/v1/incidents/{incident}/report?format=json"),
            VIEWER,
        )
        .await;
    assert_eq!(report["mark"], "演练 / drill");
}

/// An Actual Update referencing a drill warning opens an incident of its own: nothing of the
/// drill is changed, and its messages are not marked 演练.
async fn not_mixed(app: &TestApp) {
    let rong = leaders(&[RONG]);
    let n = rong.len();
    let id = unique("drill_ref");
    let (body, reference) = post(
        app,
        &Cap {
            status: "Exercise",
            ..alert(&id, false, &[RONG])
        },
    )
    .await;
    let drill = body["incidents"][0]["id"].as_i64().unwrap();
    app.gw
        .wait_until(30, "the drill call-outs", |m| m.len() >= n)
        .await;

    let uid = unique("actual_upd");
    let update = update(&uid, reference, true, &[RONG]);
    let (body, _) = post(app, &update).await;
    let actual = body["incidents"][0]["id"].as_i64().unwrap();
    assert_ne!(actual, drill, "{body}");
    let msgs = app
        .gw
        .wait_until(30, "the real call-outs", |m| m.len() >= 2 * n)
        .await;
    for m in &msgs[n..] {
        assert!(!m.text.contains("演练") && !m.text.contains("升级"), "{}", m.text);
    }
    let (_, inc) = app.get(&format!("/api/v1/incidents/{actual}"), VIEWER).await;
    assert_eq!(inc["incident"]["drill"], false, "{inc}");
    assert_eq!(colour(app, Some(drill)).await, "orange", "the drill is untouched");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM ledger WHERE kind = 'warning.not_mixed'")
            .await,
        1
    );
}

/// status System and Draft: stored, never dispatched.
async fn stored_only(app: &TestApp) {
    for status in ["System", "Draft"] {
        let id = unique(status);
        let (body, _) = post(
            app,
            &Cap {
                status,
                ..alert(&id, true, &[RONG])
            },
        )
        .await;
        assert!(
            body["note"].as_str().unwrap().contains("not dispatched"),
            "{body}"
        );
        assert_eq!(body["incidents"].as_array().unwrap().len(), 0, "{body}");
    }
    settle(app, 0).await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM warnings").await, 2);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM callouts").await, 0);
}

/// After `expires` nobody is chased any more; an Update with a later `expires` extends it.
async fn expiry(app: &TestApp) {
    let rong = leaders(&[RONG]);
    let n = rong.len();
    // Expires in 1 s, deadline 3 s: the deadline finds the warning expired.
    let id = unique("expiring");
    let (_, _) = post(
        app,
        &Cap {
            expires_in: Some(1),
            ..alert(&id, true, &[RONG])
        },
    )
    .await;
    app.gw.wait_until(30, "the call-outs", |m| m.len() >= n).await;
    // Past the deadline (3 s) and the expiry (1 s), without waiting for them.
    app.advance(Duration::from_millis(3500));
    settle(app, n).await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'deadline'")
            .await,
        0
    );

    // The same, but an Update pushes `expires` out: the ladder (repeat) runs.
    let id = unique("extended");
    let (_, original) = post(
        app,
        &Cap {
            expires_in: Some(1),
            counties: &[LUCHUAN],
            ..alert(&id, true, &[])
        },
    )
    .await;
    let lu = leaders(&[LUCHUAN]);
    let uid = unique("extends");
    let (body, _) = post(
        app,
        &Cap {
            msg_type: "Update",
            references: vec![original],
            expires_in: Some(3600),
            ..alert(&uid, true, &[LUCHUAN])
        },
    )
    .await;
    assert_eq!(body["incidents"][0]["callouts"].as_u64(), Some(0), "{body}");
    app.gw
        .wait_until(30, "a repeat for every unanswered call-out", |m| {
            m.len() >= n + 2 * lu.len()
        })
        .await;
}

both!(foreign_cancel: foreign_cancel_sqlite => Db::Sqlite, foreign_cancel_postgres => Db::Postgres);
both!(foreign_cancel_first: foreign_cancel_first_sqlite => Db::Sqlite, foreign_cancel_first_postgres => Db::Postgres);

/// The message as another sender would send it.
fn as_sender(xml: &[u8], sender: &str) -> Vec<u8> {
    let x = String::from_utf8(xml.to_vec()).unwrap();
    let old = between(&x, "<sender>", "</sender>");
    x.replacen(
        &format!("<sender>{old}</sender>"),
        &format!("<sender>{sender}</sender>"),
        1,
    )
    .into_bytes()
}

/// Issue 12, cross-sender Cancel/Update: on b78958e any feed token could Cancel or Update a
/// warning another sender sent (the reference alone chose the incident). Now a Cancel or an
/// Update from another sender touches nothing, and says so in the ledger.
async fn foreign_cancel(app: &TestApp) {
    let n = leaders(&[RONG]).len();
    let id = unique("theirs");
    let (first, original) = post(app, &alert(&id, false, &[RONG])).await;
    let incident = first["incidents"][0]["id"].as_i64().unwrap();
    app.gw.wait_until(30, "the call-outs", |m| m.len() >= n).await;
    let (cancel, _) = Cap {
        msg_type: "Cancel",
        references: vec![original.clone()],
        ..alert(&unique("forged_cancel"), false, &[RONG])
    }
    .xml(app.core.clock.now());
    let (status, body) = app
        .post_cap(&as_sender(&cancel, "someone-else@example.org"), FEED)
        .await;
    assert_eq!(status, 202, "{body}");
    assert!(
        body["note"].as_str().unwrap().contains("only revise its own"),
        "{body}"
    );
    // An Update from another sender raising the colour calls nobody again.
    let (raise, _) = update(&unique("forged_update"), original, true, &[RONG]).xml(app.core.clock.now());
    let (status, body) = app
        .post_cap(&as_sender(&raise, "someone-else@example.org"), FEED)
        .await;
    assert_eq!(status, 202, "{body}");
    settle(app, n).await;
    let (_, inc) = app.get(&format!("/api/v1/incidents/{incident}"), VIEWER).await;
    assert_eq!(inc["incident"]["state"], "active", "{inc}");
    assert_eq!(colour(app, Some(incident)).await, "orange");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM callouts WHERE state = 'cancelled'")
            .await,
        0
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM ledger WHERE kind = 'warning.ref_refused'")
            .await,
        2
    );
}

/// A Cancel sent first by another sender is not kept waiting, and one of the same sender that
/// came another way in (another source) is kept but not applied: the warning, arriving later
/// by its own feed, calls its people. (Same sender, same source: `cancel_first`, applied.)
async fn foreign_cancel_first(app: &TestApp) {
    let n = leaders(&[RONG]).len();
    let id = unique("late_theirs");
    let (xml, reference) = alert(&id, true, &[RONG]).xml(app.core.clock.now());
    let (cancel, _) = Cap {
        msg_type: "Cancel",
        references: vec![reference.clone()],
        ..alert(&unique("forged_early"), true, &[RONG])
    }
    .xml(app.core.clock.now());
    let (status, body) = app
        .post_cap(&as_sender(&cancel, "someone-else@example.org"), FEED)
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM warning_refs").await,
        0,
        "not kept waiting"
    );
    // The same sender's name, but by a way in that did not bring the warning.
    let (cancel2, _) = Cap {
        msg_type: "Cancel",
        references: vec![reference],
        ..alert(&unique("other_source_early"), true, &[RONG])
    }
    .xml(app.core.clock.now());
    jiaoying::ingest::ingest(&app.core, &cancel2, "feed:elsewhere")
        .await
        .unwrap();

    let (status, body) = app.post_cap(&xml, FEED).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body["incidents"][0]["callouts"].as_u64(),
        Some(n as u64),
        "{body}"
    );
    app.gw.wait_until(30, "the call-outs", |m| m.len() >= n).await;
    settle(app, n).await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM incidents WHERE state = 'active'")
            .await,
        1
    );
}

/// Issue 12, PostgreSQL lock order: on b78958e ingest took the ledger head with its first
/// entry and then locked the call-outs a Cancel or an Update touches, while an answer held a
/// call-out and waited for the head; PostgreSQL broke the circle by failing one of them (a
/// 500, or an answer lost). Now every writer takes the head last (`store` module comment).
/// Many rounds of an Update and a Cancel racing everyone's answers and the escalations of
/// short deadlines: nothing fails, and PostgreSQL counts no deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_answers_and_escalations_race_without_deadlock_postgres() {
    const FAST: &str = r#"
[[policy]]
name = "red"
colours = ["red", "orange"]
hazards = ["*"]
roles = ["township_leader"]
channels = ["sms"]
deadline = "300ms"
ladder = ["repeat", "repeat"]
"#;
    let Some(app) = spawn(Db::Postgres, FAST).await else {
        eprintln!("JIAOYING_PG_URL not set: PostgreSQL test skipped");
        return;
    };
    let deadlocks = || async {
        app.scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
            .await
    };
    let before = deadlocks().await;
    let people: Vec<String> = leaders(&[RONG, LUCHUAN]).into_iter().collect();
    let mut failures = Vec::new();
    for round in 0..16u64 {
        let id = unique(&format!("race{round}"));
        let (first, original) = post(&app, &alert(&id, false, &[RONG, LUCHUAN])).await;
        assert!(first["incidents"][0]["id"].as_i64().is_some(), "{first}");
        // No waiting for the sends: the Update and the Cancel meet the dispatcher recording
        // them, the answers and (from the second round) the escalations of earlier rounds.
        let now = app.core.clock.now();
        let (raise, _) = update(&unique("race_up"), original.clone(), true, &[RONG, LUCHUAN]).xml(now);
        let (cancel, _) = Cap {
            msg_type: "Cancel",
            references: vec![original],
            ..alert(&unique("race_cancel"), true, &[RONG, LUCHUAN])
        }
        .xml(now);
        let app_ref = &app;
        let answers = people.iter().map(|p| async move {
            let (s, body) = app_ref.reply(p, "收到").await;
            (format!("reply {p}"), s, body)
        });
        let ingests = [raise, cancel]
            .into_iter()
            .enumerate()
            .map(|(i, xml)| async move {
                // Spread over the rounds: sometimes before the first sends are recorded, sometimes after.
                tokio::time::sleep(Duration::from_millis(round * 7 % 60 + 20 * i as u64)).await;
                let (s, body) = app_ref.post_cap(&xml, FEED).await;
                (format!("ingest {i}"), s, body)
            });
        let (a, b) = tokio::join!(
            futures::future::join_all(answers),
            futures::future::join_all(ingests)
        );
        failures.extend(a.into_iter().chain(b).filter(|(_, s, _)| *s >= 500));
    }
    assert!(failures.is_empty(), "{failures:#?}");
    idle(&app).await;
    match jiaoying::store::ledger::verify(&app.core.store).await.unwrap() {
        Ok(n) => assert!(n > 0),
        Err(b) => panic!("ledger broken: {b}"),
    }
    assert_eq!(deadlocks().await, before, "PostgreSQL broke a deadlock");
    app.stop().await;
}
