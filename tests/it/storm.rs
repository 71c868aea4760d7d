//! Issue 11 §4: escalation storms. 500 answer deadlines fall due at once and are applied in
//! batches (`deliver::escalate::run_batch`): each call-out climbs exactly one rung, once —
//! on SQLite, and on PostgreSQL with two instances claiming from the same queue — the second
//! storm's escalations to a shared superior join one call-out per person, the ledger chain
//! still verifies, and one row that cannot be applied (a poison row) fails alone, is put back
//! with its error and parked after its tries, instead of failing its whole batch at every lease.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use jiaoying::store::jobs::PARKED;

use crate::helpers::{spawn_with_roster, Db, TestApp, FEED};

const TOWNSHIPS: usize = 50;
const VILLAGES: usize = 10;
const N: usize = TOWNSHIPS * VILLAGES;

/// Every village leader; no answer within the deadline goes to their deputy (AB角), and then
/// to the deputy's superior, the township leader.
const POLICY: &str = r#"
[[policy]]
name = "storm"
colours = ["red"]
hazards = ["*"]
roles = ["village_leader"]
channels = ["sms"]
deadline = "10m"
ladder = ["backup", "superior"]
"#;

/// A county of 50 townships × 10 villages: a leader and a deputy per village, a leader per
/// township (the deputies' superior).
pub(crate) fn roster(dir: &Path) {
    let mut regions = String::from("code,name,level,parent,lat,lon\n");
    regions += "450900,玉林市,city,,22.654,110.181\n450921,容县,county,450900,22.857,110.558\n";
    let mut contacts = String::from("key,name,phone,email,role,region,backup,superior,channels\n");
    for t in 0..TOWNSHIPS {
        let town = format!("450921{:03}", 101 + t);
        writeln!(regions, "{town},风暴镇{t},township,450921,22.6,110.3").unwrap();
        writeln!(contacts, "t-{t},镇长{t},1710{t:07},,township_leader,{town},,,").unwrap();
        for v in 0..VILLAGES {
            let village = format!("{town}{:03}", 201 + v);
            let i = t * VILLAGES + v;
            writeln!(regions, "{village},风暴村{i},village,{town},22.6,110.3").unwrap();
            writeln!(
                contacts,
                "v-{i},村长{i},1720{i:07},,village_leader,{village},d-{i},,"
            )
            .unwrap();
            writeln!(
                contacts,
                "d-{i},副村长{i},1730{i:07},,village_deputy,{village},,t-{t},"
            )
            .unwrap();
        }
    }
    std::fs::write(dir.join("regions.csv"), regions).unwrap();
    std::fs::write(dir.join("contacts.csv"), contacts).unwrap();
}

pub(crate) fn cap() -> Vec<u8> {
    let ident = format!("jiaoying-storm-{}", rand::random::<u64>());
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{ident}</identifier><sender>storm@jiaoying.test</sender><sent>2026-07-15T10:00:00+08:00</sent>
  <status>Actual</status><msgType>Alert</msgType><scope>Public</scope>
  <info><language>zh-CN</language><category>Met</category><event>暴雨红色预警</event>
    <urgency>Immediate</urgency><severity>Extreme</severity><certainty>Likely</certainty>
    <headline>风暴测试暴雨红色预警</headline><instruction>立即转移</instruction>
    <area><areaDesc>容县</areaDesc><geocode><valueName>GB2260</valueName><value>450921</value></geocode></area>
  </info>
</alert>"#
    )
    .into_bytes()
}

/// Waits for an observable condition (never a fixed sleep before a count).
async fn until(app: &TestApp, what: &str, secs: u64, sql: &str, want: i64) {
    let start = Instant::now();
    loop {
        let got = app.scalar(sql).await;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}: {got}, expected {want} ({sql})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The warning posted and every first message sent: 500 deadlines pending.
pub(crate) async fn planned(db: Db) -> Option<(TestApp, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    roster(dir.path());
    let app = spawn_with_roster(db, POLICY, dir.path()).await?;
    let (status, body) = app.post_cap(&cap(), FEED).await;
    assert_eq!(status, 202, "{body}");
    let n = N as i64;
    until(&app, "call-outs planned", 120, "SELECT COUNT(*) FROM callouts", n).await;
    let deadlines = "SELECT COUNT(*) FROM jobs WHERE kind = 'deadline'";
    until(&app, "deadlines written", 60, deadlines, n).await;
    until(
        &app,
        "first messages sent",
        120,
        "SELECT COUNT(*) FROM jobs WHERE kind = 'send'",
        0,
    )
    .await;
    Some((app, dir))
}

async fn assert_ledger_verifies(app: &TestApp) {
    let verified = jiaoying::store::ledger::verify(&app.core.store).await.unwrap();
    assert!(verified.is_ok(), "the ledger chain broke: {verified:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_500_deadlines_escalates_each_once_sqlite() {
    storm(Db::Sqlite, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_500_deadlines_escalates_each_once_two_instances_postgres() {
    storm(Db::Postgres, true).await;
}

async fn storm(db: Db, two: bool) {
    let Some((app, _dir)) = planned(db).await else {
        eprintln!("JIAOYING_PG_URL not set: PostgreSQL storm test skipped");
        return;
    };
    let second = match two {
        true => Some(app.second_instance().await),
        false => None,
    };
    let n = N as i64;

    // The first storm: every village leader's deadline at once → their deputies.
    app.expire_deadlines().await;
    let escalated = "SELECT COUNT(*) FROM ledger WHERE kind = 'callout.escalated'";
    until(&app, "500 escalations", 120, escalated, n).await;
    until(
        &app,
        "the deputies' deadlines",
        60,
        "SELECT COUNT(*) FROM jobs WHERE kind = 'deadline'",
        n,
    )
    .await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM callouts").await, 2 * n);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM callouts WHERE role = 'village_leader' AND state = 'escalated' AND rung = 1")
            .await,
        n,
        "every leader's call-out escalated, one rung up"
    );
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM (SELECT parent_id FROM callouts WHERE parent_id IS NOT NULL
             GROUP BY parent_id HAVING COUNT(*) > 1) t"
        )
        .await,
        0,
        "a call-out escalated twice"
    );
    assert_eq!(
        app.scalar("SELECT COUNT(DISTINCT subject) FROM ledger WHERE kind = 'callout.escalated'")
            .await,
        n
    );

    // The second storm: every deputy's deadline at once → the 50 township leaders, 10 villages
    // each, joined into one call-out per leader (the batch sees what it wrote itself).
    app.expire_deadlines().await;
    until(&app, "the second storm's escalations", 120, escalated, 2 * n).await;
    until(
        &app,
        "one call-out per township leader",
        60,
        "SELECT COUNT(*) FROM callouts WHERE role = 'township_leader'",
        TOWNSHIPS as i64,
    )
    .await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM callout_joins WHERE joined_id IS NOT NULL")
            .await,
        (N - TOWNSHIPS) as i64,
        "the other nine villages of each township joined its leader's call-out"
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM callouts").await,
        2 * n + TOWNSHIPS as i64
    );
    until(
        &app,
        "the second storm's deadlines finished",
        60,
        "SELECT COUNT(*) FROM jobs WHERE kind = 'deadline' AND due_at = 0",
        0,
    )
    .await;
    assert_ledger_verifies(&app).await;
    // Escalated call-outs, their deputies' and the joined township leaders': read alike by
    // the JSON path the deadlines use and row by row.
    let incident = app.scalar("SELECT MIN(id) FROM incidents").await;
    app.assert_callout_reads_agree(incident).await;
    if let Some(second) = second {
        second.stop().await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_poison_deadline_fails_alone_and_is_parked_sqlite() {
    poison(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_poison_deadline_fails_alone_and_is_parked_postgres() {
    poison(Db::Postgres).await;
}

async fn poison(db: Db) {
    let Some((app, _dir)) = planned(db).await else {
        eprintln!("JIAOYING_PG_URL not set: PostgreSQL storm test skipped");
        return;
    };
    let n = N as i64;
    // A call-out whose stored state this version cannot read: the whole batch's read fails.
    let poisoned = app.scalar("SELECT MIN(id) FROM callouts").await;
    app.execute(&format!(
        "UPDATE callouts SET state = 'bogus' WHERE id = {poisoned}"
    ))
    .await;
    app.expire_deadlines().await;
    let escalated = "SELECT COUNT(*) FROM ledger WHERE kind = 'callout.escalated'";
    until(&app, "the 499 others escalated", 120, escalated, n - 1).await;
    let tries = format!("SELECT attempts FROM jobs WHERE kind = 'deadline' AND callout_id = {poisoned}");
    // At least once: on a loaded machine its first delay (10 s) may already have passed.
    let put_back = format!(
        "SELECT COUNT(*) FROM jobs WHERE kind = 'deadline' AND callout_id = {poisoned} AND attempts >= 1"
    );
    until(&app, "the poison deadline put back", 60, &put_back, 1).await;
    let err = format!(
        "SELECT COUNT(*) FROM jobs WHERE callout_id = {poisoned} AND last_error LIKE '%bogus%' AND due_at > 0"
    );
    assert_eq!(app.scalar(&err).await, 1, "put back later, with the reason");
    assert_eq!(app.scalar(escalated).await, n - 1, "nobody escalated twice");

    // Each later try fails alone too, until the job is parked and the ledger says why.
    let parked = format!("SELECT COUNT(*) FROM jobs WHERE callout_id = {poisoned} AND due_at = {PARKED}");
    let start = Instant::now();
    while app.scalar(&parked).await == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the poison deadline was never parked"
        );
        // Due again now, this one only (moving the clock would bring the deputies' deadlines).
        app.execute(&format!(
            "UPDATE jobs SET due_at = 0 WHERE callout_id = {poisoned} AND kind = 'deadline' AND due_at < {PARKED}"
        ))
        .await;
        app.core.wake.notify_waiters();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.scalar(&tries).await, jiaoying::deliver::escalate::MAX_TRIES);
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM ledger WHERE kind = 'callout.failed' AND subject = 'callout:{poisoned}'"
        ))
        .await,
        1
    );
    assert_eq!(app.scalar(escalated).await, n - 1);
    // Put the row right so the daemon's other readers stop tripping on it, then stop.
    app.execute(&format!(
        "UPDATE callouts SET state = 'sent' WHERE id = {poisoned}"
    ))
    .await;
    app.stop().await;
}

/// The race two instances ran into: each reads that a township leader has no open call-out,
/// and each calls them. Here the other writer is the test: it holds the incident (as a chunk
/// of deadlines, a plan slice or an Update does while it decides) and has made the leader's
/// call-out, not yet committed. Township 0's ten deputies fall due: the daemon's chunk must
/// wait for it (seen in `pg_stat_activity`, not by sleeping), then join that call-out. Without
/// the lock it does not wait: it calls the leader a second time, and the wait below fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_waits_for_another_writer_of_its_incident_and_joins_its_call_out_postgres() {
    let Some((app, _dir)) = planned(Db::Postgres).await else {
        eprintln!("JIAOYING_PG_URL not set: PostgreSQL storm test skipped");
        return;
    };
    let n = N as i64;
    app.expire_deadlines().await;
    let escalated = "SELECT COUNT(*) FROM ledger WHERE kind = 'callout.escalated'";
    until(&app, "500 escalations", 120, escalated, n).await;
    let deputies = "SELECT COUNT(*) FROM jobs j JOIN callouts c ON c.id = j.callout_id
                    WHERE j.kind = 'deadline' AND c.role = 'village_deputy'";
    until(&app, "the deputies' deadlines", 60, deputies, n).await;

    let mut other = app.db().begin().await.unwrap();
    sqlx::query("SELECT id FROM incidents FOR NO KEY UPDATE")
        .fetch_all(&mut *other)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO callouts (id, incident_id, contact_id, region_code, place, role, reason, state,
            deadline_at, created_at, updated_at)
         SELECT 9000000, (SELECT MIN(id) FROM incidents), id, region_code, '风暴镇0', role, '别的实例', 'sent',
            0, 0, 0 FROM contacts WHERE key = 't-0'",
    )
    .execute(&mut *other)
    .await
    .unwrap();
    app.execute(
        "UPDATE jobs SET due_at = 0 WHERE kind = 'deadline' AND callout_id IN
           (SELECT id FROM callouts WHERE role = 'village_deputy' AND region_code LIKE '450921101%')",
    )
    .await;
    app.core.wake.notify_waiters();
    let waiting = "SELECT LEAST(COUNT(*), 1) FROM pg_stat_activity
                   WHERE datname = current_database() AND wait_event_type = 'Lock'";
    until(
        &app,
        "the daemon's chunk waiting for the incident",
        30,
        waiting,
        1,
    )
    .await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM callouts WHERE role = 'township_leader'")
            .await,
        0,
        "nothing written while it waits"
    );
    other.commit().await.unwrap();

    until(&app, "township 0's ten escalations", 60, escalated, n + 10).await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM callouts WHERE role = 'township_leader'")
            .await,
        1,
        "the leader is called once: the daemon joined the call-out the other writer made"
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM callout_joins WHERE host_id = 9000000 AND joined_id IS NOT NULL")
            .await,
        10
    );
    app.stop().await;
}
