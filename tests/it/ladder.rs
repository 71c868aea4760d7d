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
                started.elapsed() < Duration::from_secs(30),
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
