//! The `duty:` ladder step: when a call-out goes unanswered, the duty holder over its region is
//! resolved at that moment and called, with the reason saying who did not answer.

use std::time::{Duration, Instant};

use jiaoying::clock::Clock;

use crate::helpers::{beijing, demo_cap_at, spawn_at, Db, FEED};

const POLICY: &str = r#"
[[policy]]
name = "red"
colours = ["red"]
hazards = ["*"]
roles = ["village_leader"]
channels = ["sms"]
deadline = "1s"
ladder = ["duty:county_duty"]
"#;

/// Who holds the county duty when the step fires decides who is called: `c-450921-duty` on
/// odd days of the month from 08:00, `c-450921-duty-b` on even days (config/demo/rosters.csv).
/// The clock is frozen at each instant and moved past the deadline by the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_call_out_escalates_to_the_county_duty_leader() {
    for (at, on_duty, off_duty) in [
        ("2026-07-15 10:00:00", "c-450921-duty", "c-450921-duty-b"),
        ("2026-07-16 09:00:00", "c-450921-duty-b", "c-450921-duty"),
    ] {
        let clock = Clock::frozen(beijing(at));
        let app = spawn_at(Db::Sqlite, POLICY, clock.clone()).await.unwrap();
        let (s, b) = app.post_cap(&demo_cap_at(clock.now()), FEED).await;
        assert_eq!(s, 202, "{b}");
        let first = app.scalar("SELECT COUNT(*) FROM callouts").await;
        assert!(first > 10, "{first}");
        // Nothing escalates before the deadline, whatever the machine's speed.
        assert_eq!(
            app.scalar("SELECT COUNT(*) FROM callouts WHERE parent_id IS NOT NULL")
                .await,
            0
        );
        app.advance(Duration::from_secs(2));
        let escalated = format!(
            "SELECT COUNT(*) FROM callouts c JOIN contacts k ON k.id = c.contact_id
             WHERE k.key = '{on_duty}' AND c.role = 'county_duty' AND c.parent_id IS NOT NULL
             AND c.reason LIKE '%未应答，报县防指值班领导%'"
        );
        let started = Instant::now();
        while app.scalar(&escalated).await == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "no escalation to {on_duty} at {at}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Only village leaders of 容县 escalate to 容县's duty leader, never to another county's,
        // and the one off shift is not called.
        let wrong = app
            .scalar(&format!(
                "SELECT COUNT(*) FROM callouts c JOIN callouts p ON p.id = c.parent_id
                 JOIN contacts k ON k.id = c.contact_id
                 WHERE (k.key = '{on_duty}' AND p.region_code NOT LIKE '450921%') OR k.key = '{off_duty}'"
            ))
            .await;
        assert_eq!(wrong, 0, "at {at}");
        app.stop().await;
    }
}

/// One person, one call per step (SPEC §2): the villages of 容县 that stay silent all escalate
/// to its one duty leader, who gets one call-out naming the places waiting on them (not one per
/// village), answers once for all, and appears once in the unreached list when nobody answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalations_reaching_one_person_join_one_call_out() {
    let policy =
        POLICY.replace("deadline = \"1s\"", "deadline = \"1m\"") + "[escalation]\nbundle_window = \"10s\"\n";
    let clock = Clock::frozen(beijing("2026-07-15 10:00:00"));
    let app = spawn_at(Db::Sqlite, &policy, clock.clone()).await.unwrap();
    let (s, b) = app.post_cap(&demo_cap_at(clock.now()), FEED).await;
    assert_eq!(s, 202, "{b}");
    let villages = app.scalar("SELECT COUNT(*) FROM callouts").await;
    let rong = app
        .scalar("SELECT COUNT(*) FROM callouts WHERE region_code LIKE '450921%'")
        .await;
    assert!(rong > 3, "{rong} villages of 容县");
    app.gw
        .wait_until(120, "the first wave", |m| m.len() as i64 == villages)
        .await;
    // Recorded, not only at the gateway: an advance past the lease while a batch is still
    // being recorded would hand its claims to the other worker (a path `crash`, `queue` and
    // `instances` test), and this test is about the ladder.
    app.wait_sent(villages, 120, "the first wave was not recorded")
        .await;

    app.advance(Duration::from_secs(61));
    let started = Instant::now();
    while app
        .scalar("SELECT COUNT(*) FROM callouts WHERE state = 'escalated'")
        .await
        < villages
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "villages not all escalated"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let most = "SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM callouts GROUP BY contact_id) t";
    assert_eq!(
        app.scalar(most).await,
        1,
        "someone has two call-outs in one incident"
    );
    let host =
        "SELECT c.id FROM callouts c JOIN contacts k ON k.id = c.contact_id WHERE k.key = 'c-450921-duty'";
    let host = app.scalar(host).await;
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM callout_joins WHERE host_id = {host} AND joined_id IS NOT NULL"
        ))
        .await,
        rong - 1,
        "every other silent village of 容县 joined the first one's escalation"
    );
    let phone: String = sqlx::query_scalar("SELECT phone FROM contacts WHERE key = 'c-450921-duty'")
        .fetch_one(app.db())
        .await
        .unwrap();
    let phone = phone.split(';').next().unwrap().to_string();
    let phone = if phone.starts_with('+') {
        phone
    } else {
        format!("+86{phone}")
    };

    // One message, after the bundling window, names the places waiting on the duty leader.
    app.advance(Duration::from_secs(11));
    let msgs = app
        .gw
        .wait_until(120, "the bundled message", |m| {
            m.iter()
                .any(|m| m.to == phone && m.text.contains(&format!("{rong}处未应答")))
        })
        .await;
    let to_leader = msgs.iter().filter(|m| m.to == phone).count();
    assert!(to_leader <= 2, "the duty leader got {to_leader} messages");

    // One answer answers them all; the others, silent, are unreached once each.
    let (s, out) = app.reply(&phone, "收到").await;
    assert_eq!((s, out["outcome"].as_str()), (200, Some("ack")), "{out}");
    assert_eq!(out["callout_id"].as_i64(), Some(host));
    app.advance(Duration::from_secs(121));
    let started = Instant::now();
    while app
        .scalar("SELECT COUNT(*) FROM callouts WHERE state NOT IN ('escalated', 'acknowledged', 'unreached')")
        .await
        > 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the ladder did not end"
        );
        app.advance(Duration::from_secs(61));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let twice = "SELECT COUNT(*) - COUNT(DISTINCT contact_id) FROM callouts WHERE state = 'unreached'";
    assert_eq!(
        app.scalar(twice).await,
        0,
        "someone is twice in the unreached list"
    );
    app.stop().await;
}

/// The last rung (上门叫应): a village leader who stays silent gets the village's disaster
/// information officer sent to the door; the officer answers the task with the result (by SMS
/// or the link), which reaches the leader (reached, moved) or not (not at home), and the report
/// lists each door and its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_door_knock_task_is_the_last_rung_and_its_result_is_recorded() {
    let policy = POLICY
        .replace("deadline = \"1s\"", "deadline = \"1m\"")
        .replace("ladder = [\"duty:county_duty\"]", "ladder = [\"knock\"]");
    let clock = Clock::frozen(beijing("2026-07-15 10:00:00"));
    let app = spawn_at(Db::Sqlite, &policy, clock.clone()).await.unwrap();
    let (s, b) = app.post_cap(&demo_cap_at(clock.now()), FEED).await;
    assert_eq!(s, 202, "{b}");
    let villages = app.scalar("SELECT COUNT(*) FROM callouts").await;
    app.gw
        .wait_until(120, "the first wave", |m| m.len() as i64 == villages)
        .await;
    // Recorded, not only at the gateway: an advance past the lease while a batch is still
    // being recorded would hand its claims to the other worker (a path `crash`, `queue` and
    // `instances` test), and this test is about the ladder.
    app.wait_sent(villages, 120, "the first wave was not recorded")
        .await;
    app.advance(Duration::from_secs(61));
    let tasks = app
        .gw
        .wait_until(120, "door-knock tasks", |m| {
            m.iter().filter(|m| m.text.contains("【上门叫应】")).count() >= 3
        })
        .await;
    let tasks: Vec<_> = tasks.iter().filter(|m| m.text.contains("【上门叫应】")).collect();
    assert!(
        tasks[0].text.contains("未应答，请立即上门叫应"),
        "{}",
        tasks[0].text
    );
    let task_of = |to: &str| {
        format!(
            "SELECT c.id FROM callouts c JOIN contacts k ON k.id = c.contact_id
             WHERE c.task = 'knock' AND k.role = 'info_officer' AND k.phone LIKE '%{}%'",
            to.trim_start_matches("+86")
        )
    };
    let door_state = |task: i64| {
        format!("SELECT p.state FROM callouts c JOIN callouts p ON p.id = c.parent_id WHERE c.id = {task}")
    };
    let state = |sql: String| {
        let app = &app;
        async move {
            sqlx::query_scalar::<_, String>(&sql)
                .fetch_one(app.db())
                .await
                .unwrap()
        }
    };

    // By SMS: 3 = already moved (the leader counts as reached); 2 = not at home (not reached).
    let (s, out) = app.reply(&tasks[0].to, "3").await;
    assert_eq!((s, out["outcome"].as_str()), (200, Some("knock")), "{out}");
    let t0 = app.scalar(&task_of(&tasks[0].to)).await;
    assert_eq!(state(door_state(t0)).await, "acknowledged");
    let (s, out) = app.reply(&tasks[1].to, "2 家里没人").await;
    assert_eq!((s, out["outcome"].as_str()), (200, Some("knock")), "{out}");
    let t1 = app.scalar(&task_of(&tasks[1].to)).await;
    assert_eq!(state(door_state(t1)).await, "escalated");
    // By the link in the task's message.
    let token = crate::helpers::token_in(&tasks[2].text);
    let r = app
        .http
        .post(format!("{}/a/{token}", app.base))
        .form(&[("action", "knock"), ("result", "reached")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("已记录上门叫应结果"));
    let t2 = app.scalar(&task_of(&tasks[2].to)).await;
    assert_eq!(state(door_state(t2)).await, "acknowledged");
    let method = format!(
        "SELECT a.method FROM acks a JOIN callouts c ON c.parent_id = a.callout_id WHERE c.id = {t2}"
    );
    assert_eq!(state(method).await, "door");

    let (s, report) = app
        .get(&format!("/api/v1/incidents/{}/report", 1), crate::helpers::VIEWER)
        .await;
    assert_eq!(s, 200, "{report}");
    let knocks = report["door_knocks"].as_array().unwrap();
    let result = |t: i64| {
        knocks
            .iter()
            .find(|k| k["task_id"] == t)
            .map(|k| k["result"].clone())
    };
    assert_eq!(result(t0), Some("moved".into()));
    assert_eq!(result(t1), Some("not-home".into()));
    assert_eq!(result(t2), Some("reached".into()));
    // Knock tasks, their parents, answers by door: read alike by both paths.
    app.assert_callout_reads_agree(1).await;
    app.stop().await;
}
