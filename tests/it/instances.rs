//! Issue 9 §7, SPEC §8: several instances on PostgreSQL. Two real daemons (`jiaoying serve`)
//! share one database and one slow gateway; 10,000 people are called; one daemon is killed
//! with SIGKILL in the middle of the fan-out. The survivor takes over the dead one's claims
//! when their lease runs out, and in the end every person got the message once: the only
//! requests that went twice are sends in flight at the kill, resent under the same `ref` (the
//! gateway, keeping refs as SPEC §5 asks, answers them with the first id and delivers nothing).
//!
//! The fake gateway here is not `gateway::Fake`: it keeps refs (as `bench/sink.rs` does) and
//! records a send when it arrives, before its slow answer, so that a kill between the two
//! leaves a message that did go out with an answer that never came back.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use jiaoying::channel::signature;
use sqlx::Connection;

use crate::helpers::repo;

const N: usize = 10_000;
const SECRET: &str = "instances-gateway-secret";
const FEED_TOKEN: &str = "instances-feed-token";
/// Milliseconds the gateway takes to answer each send; with four sends at once per daemon the
/// fan-out takes a few seconds, so the kill lands in the middle of it.
const DELAY_MS: u64 = 3;

/// What the gateway received. A `ref` seen before is a repeat: answered with the id it got the
/// first time, not delivered again (SPEC §5).
#[derive(Default)]
struct Book {
    /// Every well-signed send, in arrival order: (to, ref).
    requests: Vec<(String, String)>,
    /// ref → (id answered, to)
    refs: HashMap<String, (usize, String)>,
    /// to → messages delivered (repeats not counted)
    delivered: HashMap<String, usize>,
    /// Repeats whose `to` differs from the first send of that ref.
    ref_conflicts: usize,
    bad: usize,
}

#[derive(Clone, Default)]
struct Gateway {
    book: Arc<Mutex<Book>>,
    delay_ms: Arc<AtomicU64>,
}

#[derive(serde::Deserialize)]
struct SendBody {
    to: String,
    #[serde(rename = "ref")]
    reference: String,
}

impl Gateway {
    async fn start() -> (Gateway, String) {
        let gw = Gateway::default();
        gw.delay_ms.store(DELAY_MS, Ordering::SeqCst);
        let app = Router::new().route("/send", post(send)).with_state(gw.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/send", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (gw, url)
    }

    /// People with at least one message delivered.
    fn reached(&self) -> usize {
        self.book.lock().unwrap().delivered.len()
    }

    /// Waits until `pred` holds over the book, or panics after `secs` saying what it waited for.
    async fn wait_until(&self, secs: u64, what: &str, pred: impl Fn(&Book) -> bool) {
        let start = Instant::now();
        loop {
            {
                let b = self.book.lock().unwrap();
                if pred(&b) {
                    return;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(secs),
                    "timed out after {secs} s waiting for {what}: {} people reached, {} requests",
                    b.delivered.len(),
                    b.requests.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn send(State(gw): State<Gateway>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let now = jiaoying::clock::Clock::system().now_secs();
    let Ok(()) = signature::verify(
        SECRET.as_bytes(),
        h(signature::TIMESTAMP_HEADER),
        h(signature::SIGNATURE_HEADER),
        &body,
        now,
    ) else {
        gw.book.lock().unwrap().bad += 1;
        return (StatusCode::UNAUTHORIZED, "{}".into());
    };
    let Ok(sent) = serde_json::from_slice::<SendBody>(&body) else {
        gw.book.lock().unwrap().bad += 1;
        return (StatusCode::BAD_REQUEST, "{}".into());
    };
    // The message is out when it arrives; only the answer is slow.
    let id = {
        let mut b = gw.book.lock().unwrap();
        b.requests.push((sent.to.clone(), sent.reference.clone()));
        match b.refs.get(&sent.reference).cloned() {
            Some((id, to)) => {
                if to != sent.to {
                    b.ref_conflicts += 1;
                }
                id
            }
            None => {
                let id = b.refs.len() + 1;
                b.refs.insert(sent.reference, (id, sent.to.clone()));
                *b.delivered.entry(sent.to).or_default() += 1;
                id
            }
        }
    };
    tokio::time::sleep(Duration::from_millis(gw.delay_ms.load(Ordering::SeqCst))).await;
    (StatusCode::OK, format!(r#"{{"id":"gw-{id}"}}"#))
}

/// The roster of `bench/run` for N = 10,000: 100 townships of 100 villages under 容县 450921,
/// one village leader each (phone 1700 + a 7-digit number).
fn roster(dir: &Path) {
    let mut regions = String::from(
        "code,name,level,parent,lat,lon\n450900,玉林市,city,,22.654,110.181\n450921,容县,county,450900,22.857,110.558\n",
    );
    let mut contacts = String::from("key,name,phone,email,role,region,backup,superior,channels\n");
    let townships = 100;
    for t in 0..townships {
        let town = format!("450921{:03}", 101 + t);
        let (lat, lon) = (22.6 + (t % 20) as f64 * 0.02, 110.3 + (t / 20) as f64 * 0.02);
        writeln!(
            regions,
            "{town},测试镇{},township,450921,{lat:.6},{lon:.6}",
            t + 1
        )
        .unwrap();
        for k in 0..N / townships {
            let i = t * (N / townships) + k + 1;
            let village = format!("{town}{:03}", 201 + k);
            let (vlat, vlon) = (lat + (k % 30) as f64 * 0.0005, lon + (k / 30) as f64 * 0.0005);
            writeln!(regions, "{village},测试村{i},village,{town},{vlat:.6},{vlon:.6}").unwrap();
            writeln!(contacts, "b-{i},测试{i},1700{i:07},,village_leader,{village},,,").unwrap();
        }
    }
    std::fs::write(dir.join("regions.csv"), regions).unwrap();
    std::fs::write(dir.join("contacts.csv"), contacts).unwrap();
}

/// A red rainstorm warning for 容县, sent at the tests' fixed instant (it has no expiry, so the
/// daemons, on the system clock, take it whatever the day).
fn warning() -> String {
    let now = crate::helpers::t0().with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap());
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>jiaoying-instances-{id:016x}</identifier><sender>test@jiaoying.test</sender><sent>{sent}</sent>
  <status>Actual</status><msgType>Alert</msgType><scope>Public</scope>
  <info><language>zh-CN</language><category>Met</category><event>暴雨红色预警</event>
    <urgency>Immediate</urgency><severity>Extreme</severity><certainty>Likely</certainty>
    <headline>测试暴雨红色预警</headline><instruction>立即转移</instruction>
    <area><areaDesc>容县</areaDesc><geocode><valueName>GB2260</valueName><value>450921</value></geocode></area>
  </info>
</alert>
"#,
        id = rand::random::<u64>(),
        sent = now.format("%Y-%m-%dT%H:%M:%S+08:00"),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn jiaoying(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jiaoying"));
    c.arg("--config")
        .arg(config)
        .args(args)
        .env("JIAOYING_ANSWER_SECRET", "instances-answer-secret")
        .env("JIAOYING_INSTANCES_GW_SECRET", SECRET)
        .env("JIAOYING_INSTANCES_FEED_TOKEN", FEED_TOKEN)
        .env("RUST_LOG", "warn")
        .current_dir(repo());
    c
}

/// A `jiaoying serve` process, killed (SIGKILL) when dropped still running: a failing test
/// leaves no daemon behind.
struct Daemon {
    child: Child,
    base: String,
}

impl Daemon {
    async fn start(config: &Path) -> Daemon {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let child = jiaoying(config, &["serve"])
            .env("JIAOYING_HTTP__BIND", format!("127.0.0.1:{port}"))
            .env("JIAOYING_HTTP__PUBLIC_URL", &base)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let d = Daemon { child, base };
        let start = Instant::now();
        loop {
            if let Ok(r) = reqwest::get(format!("{}/readyz", d.base)).await {
                if r.status() == 200 {
                    return d;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "serve did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill_9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait: the batch in hand is recorded before the process exits.
    async fn stop(mut self) {
        let term = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(term.success());
        let start = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "no graceful stop within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The test's own PostgreSQL database, dropped when the test ends, failed or not (a failed
/// run of a 10,000-person test would otherwise leave a database behind each time).
struct Database {
    admin_url: String,
    name: String,
}

impl Database {
    async fn create(admin_url: &str) -> (Database, String) {
        let name = format!("jy_test_{:016x}", rand::random::<u64>());
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .expect("JIAOYING_PG_URL must reach PostgreSQL");
        sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        let (prefix, _) = admin_url
            .rsplit_once('/')
            .expect("a database URL with a database name");
        let url = format!("{prefix}/{name}");
        let db = Database {
            admin_url: admin_url.to_string(),
            name,
        };
        (db, url)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime (or while it unwinds): the statement goes on a
        // thread with a runtime of its own.
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&url).await?;
                sqlx::Executor::execute(&mut admin, format!("DROP DATABASE {name} WITH (FORCE)").as_str())
                    .await
                    .map(|_| ())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

async fn count(db: &mut sqlx::PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql).fetch_one(db).await.unwrap()
}

/// Waits for a count in the database to reach `want`, or panics after `secs`.
async fn until_count(db: &mut sqlx::PgConnection, secs: u64, what: &str, sql: &str, want: i64) {
    let start = Instant::now();
    loop {
        let n = count(db, sql).await;
        if n == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}: {n}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_one_killed_mid_fan_out_reach_everyone_once() {
    let Ok(pg) = std::env::var("JIAOYING_PG_URL") else {
        eprintln!("JIAOYING_PG_URL not set: two-instance kill test skipped");
        return;
    };
    let began = Instant::now();
    let (_database, url) = Database::create(&pg).await;

    let dir = tempfile::tempdir().unwrap();
    roster(dir.path());
    let (gw, gw_url) = Gateway::start().await;
    let config = dir.path().join("jiaoying.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[database]
url = "{url}"
[dispatch]
batch = 256
workers = 2
poll = "50ms"
lease = "2s"
[channels]
sms = ["fake"]
[gateways.fake]
kind = "generic"
url = "{gw_url}"
secret_env = "JIAOYING_INSTANCES_GW_SECRET"
[gateways.fake.limits]
concurrency = 4
[[auth.tokens]]
name = "feed"
role = "feed"
token_env = "JIAOYING_INSTANCES_FEED_TOKEN"
# One SMS to every village leader; the 30-minute deadline keeps escalation out of the count.
[[policy]]
name = "instances"
colours = ["red"]
hazards = ["*"]
roles = ["village_leader"]
channels = ["sms"]
deadline = "30m"
ladder = ["backup"]
evacuation = false
"#
        ),
    )
    .unwrap();
    for (kind, file) in [("regions", "regions.csv"), ("contacts", "contacts.csv")] {
        let out = jiaoying(
            &config,
            &["import", kind, &dir.path().join(file).display().to_string()],
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "import {kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();

    let mut doomed = Daemon::start(&config).await;
    let survivor = Daemon::start(&config).await;
    let set_up = began.elapsed();
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/warnings", doomed.base))
        .bearer_auth(FEED_TOKEN)
        .header("content-type", "application/cap+xml")
        .body(warning())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["incidents"][0]["callouts"].as_u64(),
        Some(N as u64),
        "{body}"
    );

    // Both daemons sending (each has claimed sends), and some but not most people reached.
    let dead = format!("%-{}-%", doomed.pid());
    let alive = format!("%-{}-%", survivor.pid());
    let claimed_by =
        |who: &str| format!("SELECT COUNT(*) FROM jobs WHERE kind = 'send' AND claimed_by LIKE '{who}'");
    let start = Instant::now();
    let (mut both, mut seen_alive) = (false, false);
    while !(both && gw.reached() >= N / 5) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the fan-out did not get going on both daemons ({} reached)",
            gw.reached()
        );
        seen_alive |= count(&mut db, &claimed_by(&alive)).await > 0;
        both = seen_alive && count(&mut db, &claimed_by(&dead)).await > 0;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    doomed.kill_9();
    let reached_at_kill = gw.reached();
    let in_flight = count(
        &mut db,
        &format!(
            "SELECT COUNT(*) FROM attempts a JOIN jobs j ON j.id = a.job_id
             WHERE a.result = 'sending' AND j.claimed_by LIKE '{dead}'"
        ),
    )
    .await;
    let orphaned = count(&mut db, &claimed_by(&dead)).await;
    assert!(
        reached_at_kill < N / 2,
        "the kill came too late to test anything ({reached_at_kill} of {N} reached)"
    );
    assert!(orphaned > 0, "the killed daemon held no claims");

    // The survivor finishes alone: the dead one's claims come back to it when their lease
    // (2 s) runs out. The bound is generous: a debug build on a slow day sends 10,000 in
    // well over a minute, and this waits for liveness, it does not time anything.
    gw.wait_until(180, "every person reached after the kill", |b| {
        b.delivered.len() >= N
    })
    .await;
    until_count(
        &mut db,
        60,
        "the send queue to empty",
        "SELECT COUNT(*) FROM jobs WHERE kind = 'send'",
        0,
    )
    .await;
    survivor.stop().await;
    let took = began.elapsed();
    let lost = count(&mut db, "SELECT COUNT(*) FROM attempts WHERE result = 'lost'").await;
    let sending = count(&mut db, "SELECT COUNT(*) FROM attempts WHERE result = 'sending'").await;
    let unsent = count(&mut db, "SELECT COUNT(*) FROM callouts WHERE state <> 'sent'").await;
    db.close().await.unwrap();

    let b = gw.book.lock().unwrap();
    let requests = b.requests.len();
    let mut refs_per_person: HashMap<&str, HashSet<&str>> = HashMap::new();
    let mut sends_per_person: HashMap<&str, usize> = HashMap::new();
    for (to, r) in &b.requests {
        refs_per_person.entry(to.as_str()).or_default().insert(r.as_str());
        *sends_per_person.entry(to.as_str()).or_default() += 1;
    }
    let twice = sends_per_person.values().filter(|k| **k > 1).count();
    let dups = requests - N;
    eprintln!(
        "two instances, one killed: people {N}, reached {} (at the kill {reached_at_kill}), \
         requests {requests}, duplicates {dups} (people sent to twice {twice}), in flight at the kill \
         {in_flight} (found lost by the survivor {lost}), claims orphaned {orphaned}; \
         set-up {:.1} s, in all {:.1} s",
        b.delivered.len(),
        set_up.as_secs_f64(),
        took.as_secs_f64()
    );
    assert_eq!(b.bad, 0, "badly signed or malformed sends");
    // Nobody lost, nobody delivered twice.
    assert_eq!(b.delivered.len(), N, "people reached");
    assert!(
        b.delivered.values().all(|k| *k == 1),
        "someone was delivered two messages"
    );
    // A second request only under the first one's ref, and only for a send in flight at the kill.
    assert_eq!(b.ref_conflicts, 0, "a ref reused for another person");
    assert!(
        refs_per_person.values().all(|r| r.len() == 1),
        "a person sent to again under a new ref"
    );
    assert!(
        dups as i64 <= lost,
        "{dups} duplicate requests but only {lost} sends were in flight at the kill"
    );
    assert_eq!(sending, 0, "attempts left `sending`");
    assert_eq!(unsent, 0, "call-outs not marked sent");
}
