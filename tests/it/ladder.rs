//! The `duty:` ladder step: when a call-out goes unanswered, the duty holder over its region is
//! resolved at that moment and called, with the reason saying who did not answer.

use std::time::{Duration, Instant};

use crate::helpers::{demo_cap, spawn, Db, FEED};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_call_out_escalates_to_the_county_duty_leader() {
    let app = spawn(Db::Sqlite, POLICY).await.unwrap();
    let (s, b) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(s, 202, "{b}");
    let first = app.scalar("SELECT COUNT(*) FROM callouts").await;
    assert!(first > 10, "{first}");
    let escalated = "SELECT COUNT(*) FROM callouts c JOIN contacts k ON k.id = c.contact_id
        WHERE k.key = 'c-450921-duty' AND c.role = 'county_duty' AND c.parent_id IS NOT NULL
        AND c.reason LIKE '%未应答，报县防指值班领导%'";
    let started = Instant::now();
    while app.scalar(escalated).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no escalation to the county duty leader"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Only village leaders of 容县 escalate to 容县's duty leader, never to another county's.
    let wrong = app
        .scalar(
            "SELECT COUNT(*) FROM callouts c JOIN callouts p ON p.id = c.parent_id
             JOIN contacts k ON k.id = c.contact_id
             WHERE k.key = 'c-450921-duty' AND p.region_code NOT LIKE '450921%'",
        )
        .await;
    assert_eq!(wrong, 0);
    app.stop().await;
}
