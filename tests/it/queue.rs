//! The job queue keeps its promises (SPEC §8, DESIGN principle 8): a graceful stop in the
//! middle of a fan-out sends nobody twice; a batch that outlives its lease is not taken over
//! and sent again; a deadline that runs twice climbs one rung; a job that does not read is
//! kept, not run with a default; several instances poll a feed once per tick between them.
//! The fake gateway stands for the phones: what it records is what people received.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use jiaoying::clock::Clock;

use crate::gateway::Sent;
use crate::helpers::{demo_cap_at, spawn, spawn_at, t0, Db, FEED};

/// A small incident: every township leader of the three counties of the demo warning.
const LEADERS: &str = r#"
[[policy]]
name = "red"
colours = ["red"]
hazards = ["*"]
roles = ["township_leader"]
channels = ["sms"]
deadline = "1m"
ladder = ["repeat", "backup"]
"#;

/// Asserts that every person got exactly one message and every message went once.
fn once_each(msgs: &[Sent], n: usize) {
    let mut by_phone: HashMap<&str, usize> = HashMap::new();
    for m in msgs {
        *by_phone.entry(m.to.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = by_phone.iter().filter(|(_, k)| **k > 1).collect();
    assert!(
        twice.is_empty(),
        "{} people got the same call-out twice, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(3)]
    );
    assert_eq!(by_phone.len(), n, "people reached");
    let refs: HashSet<&str> = msgs.iter().map(|m| m.reference.as_str()).collect();
    assert_eq!(refs.len(), msgs.len(), "a message key sent twice");
}

/// Waits for an observable condition (never a fixed sleep before a count).
async fn until(what: &str, secs: u64, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stops_mid_fan_out_send_nobody_twice_sqlite() {
    graceful_stops(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stops_mid_fan_out_send_nobody_twice_postgres() {
    graceful_stops(Db::Postgres).await;
}

/// Three stops in the middle of the demo fan-out (a slow gateway, small batches, so each stop
/// lands while a batch is in flight), each followed by a restart on the same database.
async fn graceful_stops(db: Db) {
    let Some(mut app) = spawn(db, "[dispatch]\nbatch = 40\n").await else {
        eprintln!("JIAOYING_PG_URL not set: PostgreSQL queue test skipped");
        return;
    };
    app.gw.delay_ms.store(25, Ordering::SeqCst);
    let (s, b) = app.post_cap(&demo_cap_at(app.core.clock.now()), FEED).await;
    assert_eq!(s, 202, "{b}");
    let n = b["incidents"][0]["callouts"].as_u64().unwrap() as usize;
    assert!(n > 1000, "{n}");
    for share in [10, 40, 70] {
        let gw = app.gw.clone();
        gw.wait_until(120, "the fan-out to get going", |m| m.len() >= n * share / 100)
            .await;
        assert!(gw.messages().len() < n, "the stop must land mid fan-out");
        app = app.restart().await;
    }
    let msgs = app.gw.wait_until(120, "every call-out", |m| m.len() >= n).await;
    until("the queue to settle", 60, async || {
        app.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'send'").await == 0
    })
    .await;
    once_each(&app.gw.messages(), n);
    assert_eq!(msgs.len(), n);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM attempts WHERE result <> 'sent'")
            .await,
        0,
        "a graceful stop leaves no attempt in flight or lost"
    );
    app.stop().await;
}

/// Two workers, a lease shorter than a slow gateway's answer: the batch's claim is renewed
/// while it is in flight, so the other worker never takes it over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_outlives_its_lease_is_not_sent_again() {
    let extra = format!("{LEADERS}\n[dispatch]\nbatch = 20\nworkers = 2\nlease = \"200ms\"\n");
    let app = spawn(Db::Sqlite, &extra).await.unwrap();
    app.gw.delay_ms.store(700, Ordering::SeqCst);
    let (s, b) = app.post_cap(&demo_cap_at(app.core.clock.now()), FEED).await;
    assert_eq!(s, 202, "{b}");
    let n = b["incidents"][0]["callouts"].as_u64().unwrap() as usize;
    assert!(n > 40, "{n}: more than two batches");
    app.gw.wait_until(120, "every call-out", |m| m.len() >= n).await;
    until("the queue to settle", 60, async || {
        app.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'send'").await == 0
    })
    .await;
    once_each(&app.gw.messages(), n);
    app.stop().await;
}

/// Every deadline job is there twice (a job run twice, a lease lost): the call-out climbs one
/// rung (`repeat`), never two (`backup`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_that_runs_twice_climbs_one_rung() {
    let clock = Clock::frozen(t0());
    let app = spawn_at(Db::Sqlite, LEADERS, clock.clone()).await.unwrap();
    let (s, b) = app.post_cap(&demo_cap_at(clock.now()), FEED).await;
    assert_eq!(s, 202, "{b}");
    let n = b["incidents"][0]["callouts"].as_u64().unwrap() as usize;
    app.gw
        .wait_until(60, "the first call-outs", |m| m.len() >= n)
        .await;
    let copied = sqlx::query(
        "INSERT INTO jobs (kind, callout_id, payload, due_at, created_at)
         SELECT kind, callout_id, payload, due_at, created_at FROM jobs WHERE kind = 'deadline'",
    )
    .execute(app.db())
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(copied as usize, n);
    app.advance(Duration::from_secs(61));
    let msgs = app.gw.wait_until(60, "the repeats", |m| m.len() >= 2 * n).await;
    let due = format!(
        "SELECT COUNT(*) FROM jobs WHERE kind IN ('deadline', 'send') AND due_at <= {}",
        clock.now_ms()
    );
    until("every due deadline to run", 60, async || {
        app.scalar(&due).await == 0
    })
    .await;
    assert_eq!(app.gw.messages().len(), 2 * n, "{} messages", msgs.len());
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM callouts WHERE rung = 1").await as usize,
        n
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM callouts WHERE parent_id IS NOT NULL")
            .await,
        0
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM ledger WHERE kind = 'callout.repeated'")
            .await as usize,
        n
    );
    app.stop().await;
}

/// A kind a newer version wrote is kept and never run; a known kind whose payload does not
/// read is parked with the reason, not run with a default rung.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_that_do_not_read_are_kept_not_run() {
    let app = spawn(Db::Sqlite, "").await.unwrap();
    let pool = app.db();
    for (kind, payload) in [("brief_hourly", "{\"every\": \"1h\"}"), ("deadline", "{}")] {
        sqlx::query("INSERT INTO jobs (kind, payload, due_at, created_at) VALUES ($1, $2, 0, 0)")
            .bind(kind)
            .bind(payload)
            .execute(pool)
            .await
            .unwrap();
    }
    until("the broken deadline to be parked", 30, async || {
        app.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'deadline' AND last_error IS NOT NULL")
            .await
            == 1
    })
    .await;
    jiaoying::app::worker::drain(&app.core, "test-drain")
        .await
        .unwrap();
    let (due, error): (i64, String) =
        sqlx::query_as("SELECT due_at, last_error FROM jobs WHERE kind = 'deadline'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(due, jiaoying::store::jobs::PARKED);
    assert!(error.starts_with("parked: deadline payload"), "{error}");
    let (claimed, payload): (Option<String>, String) =
        sqlx::query_as("SELECT claimed_by, payload FROM jobs WHERE kind = 'brief_hourly'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!((claimed, payload.as_str()), (None, "{\"every\": \"1h\"}"));
    app.stop().await;
}

/// Two daemons on one PostgreSQL database, one clock: a feed polled every second is polled
/// once per tick between them, and its poll job exists once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_poll_a_feed_once_per_tick() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let server = Router::new().route(
        "/index.atom",
        get(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                StatusCode::NOT_MODIFIED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/index.atom", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, server).await.unwrap() });
    let extra =
        format!("[[feed]]\nname = \"cma\"\nurl = \"{url}\"\nkind = \"index\"\nschedule = \"* * * * * *\"\n");
    let clock = Clock::frozen(t0());
    let Some(app) = spawn_at(Db::Postgres, &extra, clock.clone()).await else {
        eprintln!("JIAOYING_PG_URL not set: two-instance feed test skipped");
        return;
    };
    let other = app.second_instance().await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'feed_poll'")
            .await,
        1
    );
    for tick in 1..=5 {
        app.advance(Duration::from_secs(1));
        other.core.wake.notify_waiters();
        until("the tick's poll", 30, async || {
            hits.load(Ordering::SeqCst) >= tick
        })
        .await;
        // The job is back in the queue, unclaimed, due at the next tick: this tick is over.
        let next = format!(
            "SELECT COUNT(*) FROM jobs WHERE kind = 'feed_poll' AND claimed_by IS NULL AND due_at > {}",
            clock.now_ms()
        );
        until("the poll job to be rescheduled", 30, async || {
            app.scalar(&next).await == 1
        })
        .await;
        assert_eq!(hits.load(Ordering::SeqCst), tick, "polls after tick {tick}");
    }
    other.stop().await;
    app.stop().await;
}
