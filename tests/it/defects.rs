//! Issue 12 defects of the operations side, each through the real server: what `/readyz`
//! shows and to whom, health probes and scrapes that cannot take the database from a fan-out,
//! and the server's time-outs and connection cap. Each test names the behaviour of b78958e
//! it catches.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{demo_cap, spawn, Db, FEED, VIEWER};

const DEADLINE: Duration = Duration::from_secs(10);

/// b78958e: `/readyz` answered anyone with every feed's URL and last error. Now anonymous
/// callers get only the status; a viewer token gets the details.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_shows_details_only_to_a_viewer() {
    let feed = "[[feed]]\nname = \"secret-src\"\nurl = \"http://10.9.8.7:1/private/index.atom\"\nkind = \"index\"\nschedule = \"0 0 0 1 1 * 2099\"\n";
    let app = spawn(Db::Sqlite, feed).await.unwrap();
    let r = app.http.get(format!("{}/readyz", app.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        serde_json::json!({"status": "ready"})
    );
    assert!(!text.contains("10.9.8.7"), "{text}");
    // A wrong token is anonymous too.
    let (_, wrong) = app.get("/readyz", "not-a-token-at-all").await;
    assert_eq!(wrong, serde_json::json!({"status": "ready"}));
    let (status, full) = app.get("/readyz", VIEWER).await;
    assert_eq!(status, 200);
    assert_eq!(full["database"], "sqlite");
    assert!(
        full["feeds"][0]["url"].as_str().unwrap().contains("10.9.8.7"),
        "{full}"
    );
    app.stop().await;
}

/// b78958e: every `/readyz` and `/metrics` took SQLite's one connection, so a flood of them
/// queued against the sends of a fan-out. Now they are answered from `core.health`, which
/// reads the store at most once per TTL: counted, not timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_probes_reads_the_store_once_per_ttl() {
    use jiaoying::core::health::{METRICS_TTL, READY_TTL};
    let app = spawn(Db::Sqlite, "").await.unwrap();
    let started = Instant::now();
    let (s, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(s, 202, "{body}");
    let planned: i64 = app.scalar("SELECT COUNT(*) FROM callouts").await;
    assert!(planned > 0);
    let before = app.core.health.store_reads();
    let mut probes = tokio::task::JoinSet::new();
    for i in 0..400 {
        let (http, base) = (app.http.clone(), app.base.clone());
        probes.spawn(async move {
            let path = if i % 2 == 0 { "/readyz" } else { "/metrics" };
            http.get(format!("{base}{path}"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
    }
    let mut ok = 0;
    while let Some(r) = probes.join_next().await {
        if r.unwrap().is_ok_and(|s| s == 200) {
            ok += 1;
        }
    }
    assert_eq!(ok, 400);
    // The fan-out completes under the flood.
    for i in 0.. {
        let left = app
            .scalar("SELECT COUNT(*) FROM callouts WHERE state IN ('planned', 'sending')")
            .await;
        if left == 0 {
            break;
        }
        assert!(i < 1200, "{left} call-outs still unsent after 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let reads = app.core.health.store_reads() - before;
    let bound =
        elapsed.as_millis() / READY_TTL.as_millis() + elapsed.as_millis() / METRICS_TTL.as_millis() + 2;
    assert!(
        reads as u128 <= bound,
        "{reads} store reads for 400 probes in {elapsed:?} (at most {bound})"
    );
    app.stop().await;
}

/// Reads until the peer closes (or resets) the connection; `Err` if it is still open at the
/// deadline.
async fn closed_within(s: &mut TcpStream, deadline: Duration) -> Result<Vec<u8>, ()> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(deadline, read).await.map_err(|_| ())?;
    Ok(got)
}

/// Slowloris: a client that sends its headers one byte at a time, each byte in time, is cut
/// off when the whole header has taken `header_timeout`, not kept while it trickles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_sent_a_byte_at_a_time_are_cut_off() {
    let app = spawn(Db::Sqlite, "[http]\nheader_timeout = \"500ms\"")
        .await
        .unwrap();
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let request =
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut sent = 0;
    for b in request {
        // One byte every 100 ms: each arrives well inside any per-read time-out.
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > DEADLINE {
            break;
        }
    }
    let got = closed_within(&mut s, DEADLINE)
        .await
        .expect("the server closed it");
    assert!(
        sent < request.len(),
        "all {sent} bytes accepted: the header was never cut off"
    );
    assert!(
        !String::from_utf8_lossy(&got).contains("200 OK"),
        "answered: {got:?}"
    );
    assert_eq!(app.text("/healthz").await, "ok");
    app.stop().await;
}

/// An idle kept-alive connection is closed after `header_timeout`, not kept for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = spawn(Db::Sqlite, "[http]\nheader_timeout = \"300ms\"")
        .await
        .unwrap();
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = closed_within(&mut s, DEADLINE)
        .await
        .expect("closed after the idle time-out");
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "{got:?}"
    );
    app.stop().await;
}

/// Past `http.max_connections`, a new connection waits (unanswered) until one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_for_a_free_slot() {
    let app = spawn(
        Db::Sqlite,
        "[http]\nmax_connections = 2\nheader_timeout = \"30s\"",
    )
    .await
    .unwrap();
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    let mut third = TcpStream::connect(&addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf))
            .await
            .is_err(),
        "a third connection was served while two were open"
    );
    drop(held.pop());
    let n = tokio::time::timeout(DEADLINE, third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    app.stop().await;
}

/// Township leaders by SMS, a deadline far away, and a short retry schedule.
const ONE_BAD_ROW: &str = r#"
[dispatch]
retry_backoff = ["200ms", "200ms"]

[[policy]]
name = "red"
colours = ["red"]
hazards = ["*"]
roles = ["township_leader"]
channels = ["sms"]
deadline = "3600s"
ladder = ["repeat"]
"#;

/// b78958e: one row whose outcome could never be written (here a trigger refuses it) failed
/// the whole batch's transaction, so none of its sends was recorded and the batch was claimed
/// and sent again every lease. Now the others are recorded once and the bad one is retried on
/// its own backoff, then given up with a ledger entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_row_that_always_fails_is_isolated_from_its_batch_sqlite() {
    one_bad_row(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_row_that_always_fails_is_isolated_from_its_batch_postgres() {
    one_bad_row(Db::Postgres).await;
}

async fn one_bad_row(db: Db) {
    let Some(app) = spawn(db, ONE_BAD_ROW).await else {
        return;
    };
    let triggers: &[&str] = match db {
        Db::Sqlite => &["CREATE TRIGGER bad_row BEFORE UPDATE OF state ON callouts
             WHEN NEW.id = (SELECT MIN(id) FROM callouts) AND NEW.state = 'sent'
             BEGIN SELECT RAISE(ABORT, 'this row cannot be written'); END"],
        Db::Postgres => &[
            "CREATE FUNCTION bad_row() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.id = (SELECT MIN(id) FROM callouts) AND NEW.state = 'sent' THEN
               RAISE EXCEPTION 'this row cannot be written'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER bad_row BEFORE UPDATE OF state ON callouts FOR EACH ROW EXECUTE FUNCTION bad_row()",
        ],
    };
    for t in triggers {
        sqlx::query(t).execute(app.db()).await.unwrap();
    }
    let (s, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(s, 202, "{body}");
    let n = app.scalar("SELECT COUNT(*) FROM callouts").await;
    assert!(n > 2, "{n}");
    let bad: i64 = app.scalar("SELECT MIN(id) FROM callouts").await;
    for i in 0.. {
        let given_up = app
            .scalar("SELECT COUNT(*) FROM ledger WHERE kind = 'job.given_up'")
            .await;
        let sent = app
            .scalar("SELECT COUNT(*) FROM callouts WHERE sent_at IS NOT NULL")
            .await;
        if given_up == 1 && sent == n - 1 {
            break;
        }
        assert!(
            i < 600,
            "after 30 s: {sent} of {} sent, {given_up} given up",
            n - 1
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let msgs = app.gw.messages();
    let bad_phone: String = sqlx::query_scalar("SELECT DISTINCT address FROM attempts WHERE callout_id = $1")
        .bind(bad)
        .fetch_one(app.db())
        .await
        .unwrap();
    let mut per: std::collections::HashMap<&str, usize> = Default::default();
    for m in &msgs {
        *per.entry(m.to.as_str()).or_default() += 1;
    }
    assert_eq!(per.len() as i64, n, "everyone was sent to");
    for (to, k) in &per {
        if *to == bad_phone {
            // The first try and one per backoff step, then no more.
            assert_eq!(*k, 3, "the bad row was sent {k} times");
        } else {
            assert_eq!(*k, 1, "{to} was sent {k} times");
        }
    }
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM jobs WHERE callout_id = {bad} AND kind = 'send'"
        ))
        .await,
        0
    );
    app.stop().await;
}

/// b78958e took a description of any length. Now a field over its cap is a 422 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_field_over_its_cap_is_a_422_naming_it() {
    let app = spawn(Db::Sqlite, "").await.unwrap();
    let cap = String::from_utf8(demo_cap()).unwrap();
    let long = "雨".repeat(jiaoying::cap::limits::max_chars("description") + 1);
    let cap = cap.replacen("<description>", &format!("<description>{long}"), 1);
    let (status, body) = app.post_cap(cap.as_bytes(), FEED).await;
    assert_eq!(status, 422, "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("alert/info[0]/description") && msg.contains("20000"),
        "{msg}"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM warnings").await, 0);
    app.stop().await;
}

/// A full disk (SQLite's size capped at what it is: `Store::cap_sqlite_growth`): the warning
/// is refused with a clear 503 and nothing of it is kept; once there is room again the daemon
/// takes the next one and commits its whole fan-out, visible from another connection, with
/// the write lock free. (A capped size fails statement by statement; the real full disk of
/// `bench/faults … diskfull` can also end a transaction under sqlx's feet, which
/// `store::tests::a_transaction_sqlite_ended_by_itself_does_not_poison_the_connection` covers.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_full_disk_the_daemon_commits_again() {
    let app = spawn(Db::Sqlite, "").await.unwrap();
    app.core.store.cap_sqlite_growth(Some(0)).await.unwrap();
    let (s, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(body["error"]["code"], "disk_full", "{body}");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM warnings").await, 0);

    app.core.store.cap_sqlite_growth(None).await.unwrap();
    let (s, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(s, 202, "{body}");
    let n = body["incidents"][0]["callouts"].as_i64().unwrap();
    assert!(n > 100, "{body}");
    app.wait_sent(n, 60, "the fan-out after the full disk was not committed")
        .await;
    write_lock_is_free(&app).await;
    app.stop().await;
}

/// The disk fills in the middle of a fan-out and stays full for two seconds (the fault's
/// length, not a wait for a result): sends in flight cannot be recorded, nor set aside. Once
/// there is room again the daemon resumes by itself (the jobs it could not set aside come back
/// with their lease) and commits everyone's send, with the write lock free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_full_in_the_middle_of_a_fan_out_is_recovered_from() {
    use std::sync::atomic::Ordering;
    let app = spawn(Db::Sqlite, "").await.unwrap();
    app.gw.delay_ms.store(100, Ordering::SeqCst);
    let (s, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(s, 202, "{body}");
    let n = body["incidents"][0]["callouts"].as_i64().unwrap();
    app.gw
        .wait_until(60, "the fan-out to be under way", |m| !m.is_empty())
        .await;
    app.core.store.cap_sqlite_growth(Some(0)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.core.store.cap_sqlite_growth(None).await.unwrap();
    app.gw.delay_ms.store(0, Ordering::SeqCst);
    app.wait_sent(
        n,
        90,
        "the fan-out was not committed after the disk had room again",
    )
    .await;
    write_lock_is_free(&app).await;
    app.stop().await;
}

/// Another connection can take SQLite's write lock: no unit of work of the daemon was left open.
async fn write_lock_is_free(app: &crate::helpers::TestApp) {
    sqlx::raw_sql("BEGIN IMMEDIATE; ROLLBACK;")
        .execute(app.db())
        .await
        .expect("the write lock is free");
}
