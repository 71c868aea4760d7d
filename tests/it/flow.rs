//! The whole path on both backends: a CAP warning in, one message per expected person at the
//! fake gateway, replies through the signed hook, acknowledgements and evacuation counts in
//! the incident and the report, escalation to the backup for the one who stays silent, and a
//! late answer recorded as late.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::StreamExt;

use crate::helpers::{demo_cap, repo, spawn, Db, FEED, VIEWER};

const POLICY: &str = r#"
[[policy]]
name = "red"
colours = ["red"]
hazards = ["*"]
roles = ["county_duty", "township_leader", "township_duty", "village_leader"]
channels = ["sms"]
deadline = "1h"
ladder = ["backup"]
evacuation = true
"#;

pub(crate) struct Person {
    pub key: String,
    pub role: String,
    pub region: String,
    pub phone: String,
    pub backup: String,
}

/// The demo roster read straight from its CSV: the oracle, independent of the targeting code.
pub(crate) fn roster() -> Vec<Person> {
    let text = std::fs::read_to_string(repo().join("config/demo/contacts.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Person {
                key: f[0].into(),
                role: f[4].into(),
                region: f[5].into(),
                // The first of several numbers is the one SMS goes to.
                phone: format!("+86{}", f[2].split(';').next().unwrap()),
                backup: f[6].into(),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warning_to_answers_sqlite() {
    flow(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warning_to_answers_postgres() {
    flow(Db::Postgres).await;
}

async fn flow(db: Db) {
    let Some(app) = spawn(db, POLICY).await else {
        eprintln!("JIAOYING_PG_URL not set: PostgreSQL flow skipped");
        return;
    };
    app.without_duty_rosters().await;
    let people = roster();
    let roles = [
        "county_duty",
        "township_leader",
        "township_duty",
        "village_leader",
    ];
    // The demo warning names 容县, 北流市 and 陆川县 by geocode.
    let expected: Vec<&Person> = people
        .iter()
        .filter(|p| roles.contains(&p.role.as_str()))
        .filter(|p| {
            ["450921", "450922", "450981"]
                .iter()
                .any(|c| p.region.starts_with(c))
        })
        .collect();
    assert!(
        expected.len() > 300,
        "the demo roster has {} people in those counties",
        expected.len()
    );

    let cap = demo_cap();
    let (status, body) = app.post_cap(&cap, FEED).await;
    assert_eq!(status, 202, "{body}");
    let incident = body["incidents"][0]["id"].as_i64().unwrap();
    let code = body["incidents"][0]["code"].as_str().unwrap().to_string();
    assert_eq!(
        body["incidents"][0]["callouts"].as_u64().unwrap() as usize,
        expected.len()
    );

    // One message per expected person, no more.
    let msgs = app
        .gw
        .wait_until(60, "one message per person", |m| m.len() >= expected.len())
        .await;
    assert_eq!(msgs.len(), expected.len());
    let to: HashSet<&str> = msgs.iter().map(|m| m.to.as_str()).collect();
    let want: HashSet<&str> = expected.iter().map(|p| p.phone.as_str()).collect();
    assert_eq!(to, want);
    assert!(msgs
        .iter()
        .all(|m| m.text.contains("暴雨红色预警") && m.text.contains(&code) && m.text.contains("/a/")));

    // Everyone answers but one village leader; village leaders report 12 people moved.
    let silent = expected.iter().find(|p| p.role == "village_leader").unwrap();
    let replies: Vec<(String, &str)> = expected
        .iter()
        .filter(|p| p.key != silent.key)
        .map(|p| {
            (
                p.phone.clone(),
                if p.role == "village_leader" {
                    "已转移12人"
                } else {
                    "收到"
                },
            )
        })
        .collect();
    let outcomes: Vec<(u16, serde_json::Value)> =
        futures::stream::iter(replies.iter().map(|(phone, text)| app.reply(phone, text)))
            .buffer_unordered(8)
            .collect()
            .await;
    for (status, body) in &outcomes {
        assert_eq!(*status, 200, "{body}");
        assert!(
            ["ack", "evacuation"].contains(&body["outcome"].as_str().unwrap()),
            "{body}"
        );
    }
    let leaders = expected.iter().filter(|p| p.role == "village_leader").count() as i64;
    let (status, inc) = app.get(&format!("/api/v1/incidents/{incident}"), VIEWER).await;
    assert_eq!(status, 200);
    assert_eq!(
        inc["totals"]["answered"].as_u64().unwrap() as usize,
        expected.len() - 1,
        "{}",
        inc["totals"]
    );
    assert_eq!(inc["totals"]["evacuated"].as_i64().unwrap(), 12 * (leaders - 1));

    // The silent one's deadline passes: the backup (AB角) is called about that village.
    app.expire_deadlines().await;
    let backup = people.iter().find(|p| p.key == silent.backup).unwrap();
    app.gw
        .wait_until(120, "the backup's escalation message", |m| {
            // Plus the first-wave message when the backup's role was called too.
            m.iter().filter(|s| s.to == backup.phone).count()
                == 1 + roles.contains(&backup.role.as_str()) as usize
        })
        .await;
    let callouts: Vec<(i64, i64, String, Option<i64>)> =
        sqlx::query_as("SELECT c.id, c.contact_id, c.state, c.parent_id FROM callouts c ORDER BY c.id")
            .fetch_all(app.db())
            .await
            .unwrap();
    assert_eq!(callouts.len(), expected.len() + 1);
    let silent_id: i64 = sqlx::query_scalar(
        "SELECT c.id FROM callouts c JOIN contacts k ON k.id = c.contact_id WHERE k.key = $1",
    )
    .bind(&silent.key)
    .fetch_one(app.db())
    .await
    .unwrap();
    let by_id: BTreeMap<i64, &(i64, i64, String, Option<i64>)> = callouts.iter().map(|c| (c.0, c)).collect();
    assert_eq!(by_id[&silent_id].2, "escalated");
    let child = callouts
        .iter()
        .find(|c| c.3 == Some(silent_id))
        .expect("an escalated call-out");

    // The backup answers it; then the silent one answers late, and that still counts.
    let (_, out) = app.reply(&backup.phone, "1").await;
    assert_eq!(out["outcome"], "ack", "{out}");
    assert_eq!(out["callout_id"].as_i64(), Some(child.0));
    let (_, out) = app.reply(&silent.phone, "收到").await;
    assert_eq!(out["outcome"], "ack", "{out}");
    assert_eq!(out["late"], true);

    let (status, r) = app
        .get(
            &format!("/api/v1/incidents/{incident}/report?format=json"),
            VIEWER,
        )
        .await;
    assert_eq!(status, 200);
    let totals: HashMap<String, serde_json::Value> = serde_json::from_value(r["totals"].clone()).unwrap();
    assert_eq!(totals["called"], expected.len() + 1);
    assert_eq!(totals["answered"], expected.len() + 1);
    assert_eq!(totals["late"], 1);
    assert_eq!(totals["evacuated"], 12 * (leaders - 1));
    assert_eq!(r["unreached"].as_array().unwrap().len(), 0);
    let county_sum: i64 = r["counties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["evacuated"].as_i64().unwrap())
        .sum();
    assert_eq!(county_sum, 12 * (leaders - 1), "counties roll up to the total");

    // The same warning again is recognised: 200, no new call-outs.
    let (status, body) = app.post_cap(&cap, FEED).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["duplicate"], true);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM callouts").await as usize,
        expected.len() + 1
    );

    match jiaoying::store::ledger::verify(&app.core.store).await.unwrap() {
        Ok(n) => assert!(n > 2 * expected.len(), "{n} ledger entries"),
        Err(b) => panic!("ledger broken: {b}"),
    }
    app.stop().await;
}

/// Stand-down: a viewer may not; an operator closes the incident, every unanswered call-out is
/// cancelled with its jobs, and everyone already called hears 解除.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stand_down_cancels_and_tells_everyone_called() {
    let app = spawn(Db::Sqlite, POLICY).await.unwrap();
    let (status, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(status, 202, "{body}");
    let incident = body["incidents"][0]["id"].as_i64().unwrap();
    let n = body["incidents"][0]["callouts"].as_u64().unwrap() as usize;
    let msgs = app.gw.wait_until(60, "the call-outs", |m| m.len() >= n).await;

    // An answer takes that call-out's pending jobs away with it.
    let (_, out) = app.reply(&msgs[0].to, "收到").await;
    assert_eq!(out["outcome"], "ack", "{out}");
    let answered = out["callout_id"].as_i64().unwrap();
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE callout_id = $1")
        .bind(answered)
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(left, 0);

    let url = format!("{}/api/v1/incidents/{incident}/close", app.base);
    let r = app.http.post(&url).bearer_auth(VIEWER).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = app
        .http
        .post(&url)
        .bearer_auth(crate::helpers::OPERATOR)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let closed: serde_json::Value = r.json().await.unwrap();
    assert_eq!(closed["cancelled"].as_u64().unwrap() as usize, n - 1);

    let all = app
        .gw
        .wait_until(30, "the stand-down messages", |m| m.len() >= 2 * n)
        .await;
    let standdowns: HashSet<&str> = all[n..]
        .iter()
        .filter(|m| m.text.contains("解除"))
        .map(|m| m.to.as_str())
        .collect();
    assert_eq!(standdowns.len(), n, "everyone called hears the stand-down once");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM callouts WHERE state = 'cancelled'")
            .await as usize,
        n - 1
    );
    // The gateway has the last notice before its batch commits: give the commit a moment.
    let mut left = app.scalar("SELECT COUNT(*) FROM jobs").await;
    for _ in 0..50 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        left = app.scalar("SELECT COUNT(*) FROM jobs").await;
    }
    assert_eq!(left, 0, "nothing left to send or escalate");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM ledger WHERE kind = 'notice.sent'")
            .await as usize,
        n
    );
    app.stop().await;
}
