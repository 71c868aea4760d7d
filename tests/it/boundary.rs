//! Each decision is made in one place, and every path reaches it (DESIGN principle 10):
//! - an answer by SMS, the answer page, a voice receipt or an operator is recorded once,
//!   whichever path comes second, and two answers racing record one;
//! - an evacuation count and the answer it implies commit together, on the answer page as by
//!   SMS: when the count cannot be written, neither is the answer;
//! - standing an incident down twice (closing it again, or ending the response level whose
//!   incident an operator closed) tells nobody a second time.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use jiaoying::respond::{self, Outcome};

use crate::gateway::{self, Sent};
use crate::helpers::{demo_cap, spawn, token_in, Db, TestApp, FEED, OPERATOR};

/// Few people: the county duty leaders and township leaders the demo warning reaches.
const POLICY: &str = r#"
[[policy]]
name = "red"
colours = ["red"]
hazards = ["*"]
roles = ["county_duty", "township_leader"]
channels = ["sms"]
deadline = "1h"
ladder = ["backup"]
evacuation = true

[[policy]]
name = "response"
levels = ["I", "II"]
hazards = ["flood"]
roles = ["township_leader", "village_leader"]
channels = ["sms"]
deadline = "1h"
ladder = ["backup"]
"#;

/// Posts the demo warning and waits until its call-outs are sent and committed (an answer or
/// a stand-down that overtakes the commit of a send is its own story, told in dispatch).
async fn called(app: &TestApp) -> (i64, Vec<Sent>) {
    let (status, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(status, 202, "{body}");
    let incident = body["incidents"][0]["id"].as_i64().unwrap();
    let n = body["incidents"][0]["callouts"].as_u64().unwrap() as usize;
    assert!(n >= 6, "{n} call-outs");
    let msgs = app.gw.wait_until(60, "the call-outs", |m| m.len() >= n).await;
    wait_for(app, "SELECT COUNT(*) FROM callouts WHERE sent_at IS NULL", 0).await;
    (incident, msgs)
}

async fn wait_for(app: &TestApp, sql: &str, n: i64) {
    for _ in 0..600 {
        if app.scalar(sql).await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {sql} = {n}");
}

/// The call-out a message was sent for (its `ref` is the message key of its attempts).
async fn callout_of(app: &TestApp, m: &Sent) -> i64 {
    app.scalar(&format!(
        "SELECT MIN(callout_id) FROM attempts WHERE message_key = '{}'",
        m.reference
    ))
    .await
}

async fn page(app: &TestApp, m: &Sent, form: &[(&str, &str)]) -> (u16, String) {
    let r = app
        .http
        .post(format!("{}/a/{}", app.base, token_in(&m.text)))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn voice(app: &TestApp, m: &Sent, status: &str, id: &str) -> (u16, serde_json::Value) {
    let now = app.core.clock.now();
    let (body, headers) = gateway::signed(
        &serde_json::json!({"id": id, "ref": m.reference, "status": status}),
        now.timestamp(),
    );
    let mut req = app
        .http
        .post(format!("{}/hooks/fake/status", app.base))
        .body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

async fn operator(app: &TestApp, callout: i64) -> (u16, serde_json::Value) {
    let r = app
        .http
        .post(format!("{}/api/v1/callouts/{callout}/ack", app.base))
        .bearer_auth(OPERATOR)
        .json(&serde_json::json!({"note": "phoned"}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_path_acknowledges_once_sqlite() {
    answer_paths(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_path_acknowledges_once_postgres() {
    answer_paths(Db::Postgres).await;
}

/// Each path answers its own call-out twice, then another path answers it again: one
/// acknowledgement each (a path writing its own answer would fail the second time on the
/// acks table's unique key, or record a second one). Then eight operators answer one
/// call-out at once: one answer, seven duplicates, no error.
async fn answer_paths(db: Db) {
    let Some(app) = spawn(db, POLICY).await else {
        eprintln!("JIAOYING_PG_URL not set: PostgreSQL answer paths skipped");
        return;
    };
    let (_, msgs) = called(&app).await;
    let [sms, link, heard, op, raced] = [0, 1, 2, 3, 4].map(|i| &msgs[i]);
    let mut ids = Vec::new();
    for m in [sms, link, heard, op, raced] {
        ids.push(callout_of(&app, m).await);
    }

    for expect in ["ack", "duplicate"] {
        let (status, out) = app.reply(&sms.to, "收到").await;
        assert_eq!((status, out["outcome"].as_str()), (200, Some(expect)), "{out}");
        assert_eq!(out["callout_id"].as_i64(), Some(ids[0]));
    }
    for expect in ["已确认收到", "已经确认过"] {
        let (status, html) = page(&app, link, &[("action", "ack")]).await;
        assert_eq!(status, 200);
        assert!(html.contains(expect), "{html}");
    }
    for (id, expect) in [("v-1", "ack"), ("v-2", "duplicate")] {
        let (status, out) = voice(&app, heard, "heard", id).await;
        assert_eq!((status, out["outcome"].as_str()), (200, Some(expect)), "{out}");
    }
    for expect in [
        serde_json::json!({"recorded": {"late": false}}),
        "duplicate".into(),
    ] {
        let (status, out) = operator(&app, ids[3]).await;
        assert_eq!((status, &out["result"]), (200, &expect), "{out}");
    }
    // A second path after the first: still one answer.
    let (status, out) = operator(&app, ids[0]).await;
    assert_eq!(
        (status, out["result"].as_str()),
        (200, Some("duplicate")),
        "{out}"
    );
    let (status, out) = app.reply(&op.to, "1").await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["callout_id"].as_i64(), Some(ids[3]), "{out}");
    assert_eq!(out["outcome"], "duplicate", "{out}");
    let (_, html) = page(&app, heard, &[("action", "ack")]).await;
    assert!(html.contains("已经确认过"), "{html}");

    let answers: Vec<(u16, serde_json::Value)> =
        futures::stream::iter((0..8).map(|_| operator(&app, ids[4])))
            .buffer_unordered(8)
            .collect()
            .await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    let recorded = answers
        .iter()
        .filter(|(_, o)| o["result"]["recorded"].is_object())
        .count();
    assert_eq!(recorded, 1, "{answers:?}");

    for id in &ids {
        let q = |t: &str| format!("SELECT COUNT(*) FROM {t}");
        assert_eq!(
            app.scalar(&format!("{} WHERE callout_id = {id}", q("acks")))
                .await,
            1
        );
        assert_eq!(
            app.scalar(&format!(
                "{} WHERE kind = 'ack.recorded' AND subject = 'callout:{id}'",
                q("ledger")
            ))
            .await,
            1
        );
        assert_eq!(
            app.scalar(&format!(
                "{} WHERE id = {id} AND state = 'acknowledged'",
                q("callouts")
            ))
            .await,
            1
        );
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM acks").await, 5);
    assert!(jiaoying::store::ledger::verify(&app.core.store)
        .await
        .unwrap()
        .is_ok());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evacuation_count_commits_with_its_answer_sqlite() {
    evacuation_with_answer(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evacuation_count_commits_with_its_answer_postgres() {
    evacuation_with_answer(Db::Postgres).await;
}

/// The database refuses evacuation rows for a while (a trigger, written behind the daemon's
/// back): a count from the answer page or by SMS then fails, and the answer it implies is not
/// recorded either; both are once the trigger is gone, in one transaction's ledger entries.
async fn evacuation_with_answer(db: Db) {
    let Some(app) = spawn(db, POLICY).await else {
        eprintln!("JIAOYING_PG_URL not set: PostgreSQL evacuation test skipped");
        return;
    };
    let (_, msgs) = called(&app).await;
    let (link, sms) = (&msgs[0], &msgs[1]);
    let (by_link, by_sms) = (callout_of(&app, link).await, callout_of(&app, sms).await);
    let (refuse, allow): (&[&str], &[&str]) = match db {
        Db::Sqlite => (
            &["CREATE TRIGGER no_evacuations BEFORE INSERT ON evacuations \
               BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"],
            &["DROP TRIGGER no_evacuations"],
        ),
        Db::Postgres => (
            &[
                "CREATE FUNCTION refuse_evacuations() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
                "CREATE TRIGGER no_evacuations BEFORE INSERT ON evacuations \
                 FOR EACH ROW EXECUTE FUNCTION refuse_evacuations()",
            ],
            &["DROP TRIGGER no_evacuations ON evacuations"],
        ),
    };
    for sql in refuse {
        app.execute(sql).await;
    }
    let form = [("action", "evacuation"), ("moved", "12"), ("threatened", "30")];
    let (status, _) = page(&app, link, &form).await;
    assert_eq!(status, 503, "the count could not be written");
    let (status, out) = app.reply(&sms.to, "已转移7人").await;
    assert_eq!(status, 500, "{out}");
    let answered = format!("SELECT COUNT(*) FROM acks WHERE callout_id IN ({by_link}, {by_sms})");
    assert_eq!(
        app.scalar(&answered).await,
        0,
        "an answer was kept without its count"
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM ledger WHERE kind IN ('ack.recorded', 'evacuation.reported')")
            .await,
        0
    );

    for sql in allow {
        app.execute(sql).await;
    }
    let (status, html) = page(&app, link, &form).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("已报告转移人数") && html.contains("已收到"),
        "{html}"
    );
    let (status, out) = app.reply(&sms.to, "已转移7人").await;
    assert_eq!(
        (status, out["outcome"].as_str()),
        (200, Some("evacuation")),
        "{out}"
    );
    assert_eq!(app.scalar(&answered).await, 2);
    // Each answer and its count: adjacent entries written at the same instant.
    for (id, moved) in [(by_link, 12), (by_sms, 7)] {
        let pair: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT seq, at, kind FROM ledger WHERE (kind = 'ack.recorded' AND subject = $1)
               OR (kind = 'evacuation.reported' AND body LIKE $2) ORDER BY seq",
        )
        .bind(format!("callout:{id}"))
        .bind(format!("%\"callout\":{id},%"))
        .fetch_all(app.db())
        .await
        .unwrap();
        let kinds: Vec<&str> = pair.iter().map(|p| p.2.as_str()).collect();
        assert_eq!(kinds, ["ack.recorded", "evacuation.reported"], "callout {id}");
        assert_eq!((pair[1].0, pair[1].1), (pair[0].0 + 1, pair[0].1), "callout {id}");
        let n = app
            .scalar(&format!("SELECT moved FROM evacuations WHERE callout_id = {id}"))
            .await;
        assert_eq!(n, moved);
    }
    // A second count from the page: no second answer, the count superseded.
    let (status, _) = page(&app, link, &[("action", "evacuation"), ("moved", "15")]).await;
    assert_eq!(status, 200);
    assert_eq!(app.scalar(&answered).await, 2);
    assert!(jiaoying::store::ledger::verify(&app.core.store)
        .await
        .unwrap()
        .is_ok());
    app.stop().await;
}

/// Waits until no notice is left to send, then says how many stand-down texts the gateway
/// has had after the first `called` messages (the call-outs).
async fn standdowns_when_idle(app: &TestApp, called: usize) -> usize {
    wait_for(app, "SELECT COUNT(*) FROM jobs WHERE kind = 'notice'", 0).await;
    let msgs = app.gw.messages();
    msgs[called..].iter().filter(|m| m.text.contains("解除")).count()
}

/// Closing an incident that is closed already sends nothing and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_twice_tells_everyone_once() {
    let app = spawn(Db::Sqlite, POLICY).await.unwrap();
    let (incident, msgs) = called(&app).await;
    let people: HashSet<&str> = msgs.iter().map(|m| m.to.as_str()).collect();
    let (_, out) = app.reply(&msgs[0].to, "收到").await;
    assert_eq!(out["outcome"], "ack", "{out}");

    let url = format!("{}/api/v1/incidents/{incident}/close", app.base);
    let mut cancelled = Vec::new();
    for _ in 0..2 {
        let r = app.http.post(&url).bearer_auth(OPERATOR).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["state"], "closed");
        cancelled.push(body["cancelled"].as_u64().unwrap() as usize);
        // Let the first close's notices go out before the second close.
        standdowns_when_idle(&app, msgs.len()).await;
    }
    assert_eq!(cancelled, [msgs.len() - 1, 0]);
    assert_eq!(standdowns_when_idle(&app, msgs.len()).await, people.len());
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM ledger WHERE kind = 'incident.closed'")
            .await,
        1
    );
    app.stop().await;
}

/// An operator closes a response level's incident by hand; ending the response afterwards
/// (by hand, or when its `until` passes) stands nothing down again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_response_after_its_incident_was_closed_tells_nobody_again() {
    let app = spawn(Db::Sqlite, POLICY).await.unwrap();
    let req = respond::Request {
        hazard: Some("防汛".into()),
        level: Some("II".into()),
        regions: vec!["450921104".into()],
        ..Default::default()
    };
    let Outcome::Activated {
        response,
        incident: Some(incident),
        callouts,
        ..
    } = respond::submit(&app.core, &req, "cli").await.unwrap()
    else {
        panic!("no incident")
    };
    assert!(callouts > 0);
    app.gw
        .wait_until(60, "the call-outs", |m| m.len() >= callouts)
        .await;
    wait_for(&app, "SELECT COUNT(*) FROM callouts WHERE sent_at IS NULL", 0).await;

    let url = format!("{}/api/v1/incidents/{incident}/close", app.base);
    let r = app.http.post(&url).bearer_auth(OPERATOR).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(standdowns_when_idle(&app, callouts).await, callouts);

    let end = respond::Request {
        end: Some(response),
        ..Default::default()
    };
    let out = respond::submit(&app.core, &end, "cli").await.unwrap();
    assert!(
        matches!(
            out,
            Outcome::Ended {
                now: true,
                cancelled: 0,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(standdowns_when_idle(&app, callouts).await, callouts);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM ledger WHERE kind = 'incident.closed'")
            .await,
        1
    );
    app.stop().await;
}

/// A reply without a code answers the call-out still waiting, not a newer one already answered
/// (two warnings over the same people: the second answered by link, then 「收到」 by SMS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_without_a_code_answers_the_call_out_still_waiting() {
    let app = spawn(Db::Sqlite, POLICY).await.unwrap();
    let (first, msgs) = called(&app).await;
    let n = msgs.len();
    let (status, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(status, 202, "{body}");
    let second = body["incidents"][0]["id"].as_i64().unwrap();
    assert_ne!(first, second);
    let all = app
        .gw
        .wait_until(60, "the second call-outs", |m| m.len() >= 2 * n)
        .await;
    let newer = all[n..].iter().find(|m| m.to == msgs[0].to).unwrap();
    let (status, _) = page(&app, newer, &[("action", "ack")]).await;
    assert_eq!(status, 200);
    let (status, out) = app.reply(&msgs[0].to, "收到").await;
    assert_eq!((status, out["outcome"].as_str()), (200, Some("ack")), "{out}");
    assert_eq!(
        out["callout_id"].as_i64(),
        Some(callout_of(&app, &msgs[0]).await),
        "{out}"
    );
    app.stop().await;
}
