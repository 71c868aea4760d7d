//! Response levels on both backends: an activation calls the level's roles in the regions
//! named (expected people read from the demo CSV, not from the planner); a blue warning in an
//! active Ⅱ-level region is handled with the orange policy while one outside is not; ending
//! stands down (解除, pending call-outs cancelled) and stops the raising; bad input refused;
//! `until` lapses by itself.

use std::collections::HashSet;

use jiaoying::respond::{self, Outcome, RespondError};

use jiaoying::clock::Clock;

use crate::helpers::{beijing, spawn, spawn_at, Db, TestApp, FEED, OPERATOR, VIEWER};

const POLICIES: &str = r#"
[[policy]]
name = "orange"
colours = ["orange"]
hazards = ["*"]
roles = ["county_duty", "township_leader", "township_duty"]
channels = ["sms"]
deadline = "10m"
ladder = ["backup"]

[[policy]]
name = "yellow-blue"
colours = ["yellow", "blue"]
hazards = ["*"]
roles = ["county_duty"]
channels = ["sms"]
deadline = "30m"
ladder = ["backup"]

[[policy]]
name = "response-high"
colours = []
levels = ["I", "II"]
hazards = ["flood", "typhoon"]
roles = ["township_leader", "village_leader"]
channels = ["sms"]
deadline = "10m"
ladder = ["backup"]
"#;

const ROLES: [&str; 2] = ["township_leader", "village_leader"];
const REGIONS: [&str; 2] = ["450921104", "450922"];

/// A blue rainstorm warning naming one township by its division code.
fn blue_cap(township: &str, now: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    let at = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>blue-{id}</identifier>
  <sender>450900000000@yulin.weather.demo</sender>
  <sent>{sent}</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <event>暴雨蓝色预警</event>
    <urgency>Expected</urgency>
    <severity>Minor</severity>
    <certainty>Likely</certainty>
    <expires>{expires}</expires>
    <headline>玉林市气象台发布暴雨蓝色预警信号</headline>
    <parameter><valueName>colour</valueName><value>blue</value></parameter>
    <area>
      <areaDesc>{township}</areaDesc>
      <geocode><valueName>GB2260</valueName><value>{township}</value></geocode>
    </area>
  </info>
</alert>"#,
        id = rand::random::<u32>(),
        sent = at(now),
        expires = at(now + chrono::Duration::hours(6)),
    )
    .into_bytes()
}

async fn post_response(app: &TestApp, body: serde_json::Value, token: &str) -> (u16, serde_json::Value) {
    let r = app
        .http
        .post(format!("{}/api/v1/responses", app.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// Posts a blue warning; returns (incident id, policy name, call-outs).
async fn blue(app: &TestApp, township: &str) -> (i64, String, u64) {
    let (status, body) = app
        .post_cap(&blue_cap(township, app.core.clock.now()), FEED)
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["incidents"][0]["id"].as_i64().expect("an incident");
    let (_, inc) = app.get(&format!("/api/v1/incidents/{id}"), VIEWER).await;
    let policy = inc["incident"]["policy"]["name"].as_str().unwrap().to_string();
    (id, policy, body["incidents"][0]["callouts"].as_u64().unwrap())
}

/// Waits until the count `sql` returns is `n`, or panics after 30 s.
async fn wait_for(app: &TestApp, sql: &str, n: i64) {
    for _ in 0..600 {
        if app.scalar(sql).await == n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {sql} = {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respond_sqlite() {
    activate_raise_end(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respond_postgres() {
    activate_raise_end(Db::Postgres).await;
}

async fn activate_raise_end(db: Db) {
    let Some(app) = spawn(db, POLICIES).await else {
        eprintln!("JIAOYING_PG_URL not set: PostgreSQL respond test skipped");
        return;
    };
    // The demo CSV is the oracle, read independently of targeting and planning.
    let want: HashSet<String> = crate::flow::roster()
        .into_iter()
        .filter(|p| ROLES.contains(&p.role.as_str()) && REGIONS.iter().any(|c| p.region.starts_with(c)))
        .map(|p| p.phone)
        .collect();
    assert!(want.len() > 30, "{} people expected", want.len());

    // Activation: the level's roles in the regions named and below, nobody else.
    let (status, body) = post_response(
        &app,
        serde_json::json!({"hazard": "防汛", "level": "Ⅱ级", "regions": REGIONS, "note": "强降雨持续"}),
        OPERATOR,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let rid = body["response"].as_i64().unwrap();
    let act = body["incident"].as_i64().unwrap();
    assert_eq!(body["title"], "启动防汛Ⅱ级应急响应");
    assert_eq!(body["callouts"].as_u64().unwrap() as usize, want.len());
    let msgs = app
        .gw
        .wait_until(60, "the activation call-outs", |m| m.len() >= want.len())
        .await;
    let to: HashSet<String> = msgs.iter().map(|m| m.to.clone()).collect();
    assert_eq!(to, want);
    assert_eq!(msgs.len(), want.len());
    assert!(
        msgs.iter().all(|m| m.text.contains("防汛Ⅱ级应急响应")),
        "{}",
        msgs[0].text
    );

    // One person answers; the rest stay pending. The incident reads like any other.
    // (Wait for the sends to be committed: an answer that overtakes that commit leaves the
    // call-out without `sent_at`, and `close` then skips its 解除; see the report.)
    wait_for(
        &app,
        "SELECT COUNT(*) FROM callouts WHERE sent_at IS NOT NULL",
        want.len() as i64,
    )
    .await;
    let (_, out) = app.reply(&msgs[0].to, "收到").await;
    assert_eq!(out["outcome"], "ack", "{out}");
    let (status, inc) = app.get(&format!("/api/v1/incidents/{act}"), VIEWER).await;
    assert_eq!(status, 200, "{inc}");
    assert_eq!(inc["incident"]["title"], "启动防汛Ⅱ级应急响应");
    assert_eq!(inc["incident"]["colour"], "orange");
    assert_eq!(inc["totals"]["answered"], 1, "{}", inc["totals"]);

    // A blue warning inside (温泉镇, under 陆川县) gets the orange policy; outside (双凤镇) not.
    let (inside, policy, n_inside) = blue(&app, "450922101").await;
    assert_eq!(policy, "orange");
    assert_eq!(n_inside, 3, "county duty, township leader and duty");
    let (_, policy, n_outside) = blue(&app, "450923102").await;
    assert_eq!(policy, "yellow-blue");
    assert_eq!(n_outside, 1, "county duty only");
    let raised: Vec<String> =
        sqlx::query_scalar("SELECT body FROM ledger WHERE kind = 'incident.raised' AND subject = $1")
            .bind(format!("incident:{inside}"))
            .fetch_all(app.db())
            .await
            .unwrap();
    assert_eq!(raised.len(), 1);
    let raised: serde_json::Value = serde_json::from_str(&raised[0]).unwrap();
    assert_eq!(raised["response"].as_i64(), Some(rid), "{raised}");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM ledger WHERE kind = 'incident.raised'")
            .await,
        1
    );

    // Viewers may read responses but not declare them.
    let (status, _) = post_response(&app, serde_json::json!({"end": rid}), VIEWER).await;
    assert_eq!(status, 403);
    let (status, list) = app.get("/api/v1/responses", VIEWER).await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["active"], true, "{list}");

    // End, as `jiaoying respond --end` does: 解除 to everyone called, the rest cancelled.
    let req = respond::Request {
        end: Some(rid),
        ..Default::default()
    };
    let out = respond::submit(&app.core, &req, "cli").await.unwrap();
    assert!(
        matches!(out, Outcome::Ended { now: true, cancelled, .. } if cancelled == want.len() - 1),
        "{out:?}"
    );
    assert!(out.describe().contains("已结束"), "{}", out.describe());
    let all = app
        .gw
        .wait_until(30, "the stand-down messages", |m| {
            m.iter().filter(|s| s.text.contains("解除")).count() >= want.len()
        })
        .await;
    let stood_down: HashSet<String> = all
        .iter()
        .filter(|m| m.text.contains("防汛Ⅱ级应急响应解除"))
        .map(|m| m.to.clone())
        .collect();
    assert_eq!(stood_down, want);
    let cancelled: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM callouts WHERE incident_id = $1 AND state = 'cancelled'")
            .bind(act)
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(cancelled as usize, want.len() - 1);
    let pending: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs j JOIN callouts c ON c.id = j.callout_id
         WHERE c.incident_id = $1 AND j.kind IN ('send', 'deadline')",
    )
    .bind(act)
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(pending, 0);
    // Ending twice changes nothing.
    let again = respond::submit(&app.core, &req, "cli").await.unwrap();
    assert!(matches!(again, Outcome::Ended { now: false, .. }), "{again:?}");

    // No longer raised.
    let (_, policy, n) = blue(&app, "450922101").await;
    assert_eq!((policy.as_str(), n), ("yellow-blue", 1));
    let (_, list) = app.get("/api/v1/responses", VIEWER).await;
    assert_eq!(list[0]["active"], false, "{list}");

    // Verify once nothing is being sent (verify reads the chain and its head apart).
    wait_for(
        &app,
        "SELECT COUNT(*) FROM jobs WHERE kind IN ('send', 'notice')",
        0,
    )
    .await;
    match jiaoying::store::ledger::verify(&app.core.store).await.unwrap() {
        Ok(n) => assert!(n > want.len()),
        Err(b) => panic!("ledger broken: {b}"),
    }
    app.stop().await;
}

/// A blue warning for 温泉镇 calls its county's and its township's duty holders.
const DUTY_POLICY: &str = r#"
[[policy]]
name = "blue-duty"
colours = ["blue"]
hazards = ["*"]
roles = ["county_duty", "township_leader", "township_duty"]
channels = ["sms"]
deadline = "10m"
ladder = ["backup"]
"#;

/// Who is on duty depends on the instant, never on the day the suite runs: the same warning
/// at fixed instants across a shift change, a month end, 31 December and a Beijing night.
/// The people expected were worked out by hand from `config/demo/rosters.csv`: for 陆川县
/// (450922) the county duty is `c-450922-duty` on odd days of the month from 08:00 (`1/2`)
/// and `-b` on even days (`2/2`); for 温泉镇 (450922101) the township duty is the leader on
/// days 1, 4, 7 … (`1/3`), `-duty` on 2, 5, 8 … and `-deputy` on 3, 6, 9 …, each for 24 h.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duty_holders_at_fixed_instants() {
    const LEADER: &str = "t-450922101-leader";
    const DEPUTY: &str = "t-450922101-deputy";
    let cases = [
        ("2026-07-15 10:00:00", "c-450922-duty", DEPUTY),
        // A shift boundary: the last second of the 15th's shift, then the 16th's first.
        ("2026-07-16 07:59:59", "c-450922-duty", DEPUTY),
        ("2026-07-16 08:00:00", "c-450922-duty-b", LEADER),
        // A month end, and the morning after it, still on the 30th's shift.
        ("2026-11-30 23:00:00", "c-450922-duty-b", DEPUTY),
        ("2026-12-01 07:30:00", "c-450922-duty-b", DEPUTY),
        // 31 December, and a Beijing night that is already next year.
        ("2026-12-31 12:00:00", "c-450922-duty", LEADER),
        ("2027-01-01 04:00:00", "c-450922-duty", LEADER),
        // The 28th of a February, seen on 1 March before 08:00.
        ("2027-03-01 07:30:00", "c-450922-duty-b", LEADER),
    ];
    for (at, county, township) in cases {
        let app = spawn_at(Db::Sqlite, DUTY_POLICY, Clock::frozen(beijing(at)))
            .await
            .unwrap();
        let (id, policy, _) = blue(&app, "450922101").await;
        assert_eq!(policy, "blue-duty");
        let got: HashSet<String> = sqlx::query_scalar(
            "SELECT k.key FROM callouts c JOIN contacts k ON k.id = c.contact_id WHERE c.incident_id = $1",
        )
        .bind(id)
        .fetch_all(app.db())
        .await
        .unwrap()
        .into_iter()
        .collect();
        let want: HashSet<String> = [county, LEADER, township].into_iter().map(String::from).collect();
        assert_eq!(got, want, "at {at} Beijing time");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_until_lapses() {
    let app = spawn(Db::Sqlite, POLICIES).await.unwrap();
    for (body, field) in [
        (
            serde_json::json!({"hazard": "snow", "level": "II", "regions": "450922"}),
            "hazard",
        ),
        (
            serde_json::json!({"hazard": "flood", "level": "V", "regions": "450922"}),
            "level",
        ),
        (
            serde_json::json!({"hazard": "flood", "level": "II", "regions": "450999"}),
            "regions",
        ),
        (
            serde_json::json!({"hazard": "flood", "level": "II", "regions": "450922", "until": "soon"}),
            "until",
        ),
    ] {
        let (status, out) = post_response(&app, body, OPERATOR).await;
        assert_eq!(status, 422, "{out}");
        let msg = out["error"]["message"].as_str().unwrap();
        assert!(msg.starts_with(&format!("{field}:")), "{msg}");
    }
    let (status, _) = post_response(&app, serde_json::json!({"end": 999}), OPERATOR).await;
    assert_eq!(status, 404);
    let (status, _) = post_response(&app, serde_json::json!({"levle": "II"}), OPERATOR).await;
    assert_eq!(status, 422, "unknown fields are refused");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM responses").await, 0);

    // The CLI's path: a bad level names the field; a good one with `until` lapses by itself.
    let mut req = respond::Request {
        hazard: Some("flood".into()),
        level: Some("9".into()),
        regions: vec!["450922101".into()],
        until: Some("3s".into()),
        ..Default::default()
    };
    match respond::submit(&app.core, &req, "cli").await {
        Err(RespondError::Invalid(e)) => assert_eq!(e.field, "level"),
        other => panic!("{other:?}"),
    }
    req.level = Some("I".into());
    let Outcome::Activated {
        incident: Some(act),
        callouts,
        ..
    } = respond::submit(&app.core, &req, "cli").await.unwrap()
    else {
        panic!("no incident")
    };
    assert!(callouts > 0);
    app.gw
        .wait_until(30, "stand-down after until", |m| {
            m.iter().filter(|s| s.text.contains("解除")).count() >= callouts
        })
        .await;
    let state: String = sqlx::query_scalar("SELECT state FROM incidents WHERE id = $1")
        .bind(act)
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(state, "closed");
    let by: Option<String> = sqlx::query_scalar("SELECT ended_by FROM responses")
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(by.as_deref(), Some("until"));
    app.stop().await;
}

/// Scheduled rounds during a response (雨前、雨中、雨后 三调度): each round of the policy's cron
/// schedule asks the round's roles for a status report, answered like any call-out; ending the
/// response stops the rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_rounds_call_for_status_until_the_response_ends() {
    let policies = POLICIES.replace(
        "roles = [\"township_leader\", \"village_leader\"]",
        "roles = [\"township_leader\", \"village_leader\"]\nrounds = \"0 0 8,14,20 * * *\"\nround_roles = [\"township_leader\"]",
    );
    let clock = jiaoying::clock::Clock::frozen(beijing("2026-07-15 07:00:00"));
    let app = spawn_at(Db::Sqlite, &policies, clock.clone()).await.unwrap();
    let leaders: HashSet<String> = crate::flow::roster()
        .into_iter()
        .filter(|p| p.role == "township_leader" && REGIONS.iter().any(|c| p.region.starts_with(c)))
        .map(|p| p.phone)
        .collect();
    assert!(leaders.len() > 3, "{leaders:?}");
    let (status, body) = post_response(
        &app,
        serde_json::json!({"hazard": "防汛", "level": "Ⅱ级", "regions": REGIONS}),
        OPERATOR,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let rid = body["response"].as_i64().unwrap();
    let first = body["callouts"].as_u64().unwrap() as usize;
    app.gw
        .wait_until(30, "the activation call-outs", |m| m.len() >= first)
        .await;
    let round = |n: i64| format!("第{n}轮");
    let rounds_to = |msgs: &[crate::gateway::Sent], n: i64| -> HashSet<String> {
        msgs.iter()
            .filter(|m| m.text.contains("【调度】") && m.text.contains(&round(n)))
            .map(|m| m.to.clone())
            .collect()
    };
    assert!(
        rounds_to(&app.gw.messages(), 1).is_empty(),
        "no round before 08:00"
    );

    // 08:00: round 1 asks every township leader for a status report.
    app.advance(std::time::Duration::from_secs(3600));
    let msgs = app
        .gw
        .wait_until(30, "round 1", |m| rounds_to(m, 1).len() >= leaders.len())
        .await;
    assert_eq!(rounds_to(&msgs, 1), leaders);
    let one = leaders.iter().next().unwrap();
    let (s, out) = app.reply(one, "转移 30").await;
    assert_eq!((s, out["outcome"].as_str()), (200, Some("evacuation")), "{out}");
    let task: Option<String> = sqlx::query_scalar("SELECT task FROM callouts WHERE id = $1")
        .bind(out["callout_id"].as_i64().unwrap())
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(
        task.as_deref(),
        Some("round:1"),
        "the answer went to the round's call-out"
    );

    // 14:00: round 2; then the response ends and 20:00 calls nobody.
    app.advance(std::time::Duration::from_secs(6 * 3600));
    app.gw
        .wait_until(30, "round 2", |m| rounds_to(m, 2).len() >= leaders.len())
        .await;
    let (s, _) = post_response(&app, serde_json::json!({"end": rid}), OPERATOR).await;
    assert_eq!(s, 200);
    app.advance(std::time::Duration::from_secs(6 * 3600));
    let started = std::time::Instant::now();
    while app.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'round'").await > 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the round 3 job is still there"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        rounds_to(&app.gw.messages(), 3).is_empty(),
        "a round after the response ended"
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM ledger WHERE kind = 'response.round'")
            .await,
        2
    );
    // The report keeps the rounds per township: asked, answered.
    let (s, report) = app
        .get(&format!("/api/v1/incidents/{}/report", body["incident"]), VIEWER)
        .await;
    assert_eq!(s, 200, "{report}");
    let rows = report["rounds"].as_array().unwrap();
    let asked = |n: i64| {
        rows.iter()
            .filter(|r| r["round"] == n)
            .map(|r| r["asked"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(
        (asked(1), asked(2)),
        (leaders.len() as u64, leaders.len() as u64),
        "{rows:?}"
    );
    let answered: u64 = rows
        .iter()
        .filter(|r| r["round"] == 1)
        .map(|r| r["answered"].as_u64().unwrap())
        .sum();
    assert_eq!(answered, 1);
    app.stop().await;
}
