//! SPEC §8: a kill -9 in the middle of a fan-out loses no planned call-out. The real binary is
//! started, killed while a slow gateway is part-way through, and started again: every person
//! is then reached, and only messages in flight at the kill may go twice.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::gateway::{self, Fake};
use crate::helpers::{demo_cap, repo};

const BATCH: usize = 32;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn jiaoying(config: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jiaoying"));
    c.arg("--config")
        .arg(config)
        .args(args)
        .env("JIAOYING_ANSWER_SECRET", "crash-test-secret")
        .env("JIAOYING_TEST_GW_SECRET", gateway::SECRET)
        .env("JIAOYING_CRASH_FEED_TOKEN", "crash-feed-token")
        .env("RUST_LOG", "warn")
        .current_dir(repo());
    c
}

// The child is handed to the caller, which kills and waits for it.
#[allow(clippy::zombie_processes)]
async fn serve(config: &std::path::Path, base: &str) -> Child {
    let mut child = jiaoying(config, &["serve"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await {
            if r.status() == 200 {
                return child;
            }
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A daemon's configuration on a fresh SQLite database with the demo roster imported, sending
/// through the fake generic gateway at `gw_url`.
struct Setup {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    base: String,
}

fn setup(gw_url: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("jiaoying.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[database]
url = "sqlite://{db}"
[http]
bind = "127.0.0.1:{port}"
public_url = "{base}"
[dispatch]
batch = {BATCH}
workers = 1
poll = "50ms"
lease = "2s"
retry_backoff = ["200ms", "500ms"]
[channels]
sms = ["fake"]
[gateways.fake]
kind = "generic"
url = "{gw_url}"
secret_env = "JIAOYING_TEST_GW_SECRET"
[gateways.fake.limits]
concurrency = 4
breaker_cooldown = "2s"
[[auth.tokens]]
name = "feed"
role = "feed"
token_env = "JIAOYING_CRASH_FEED_TOKEN"
"#,
            db = dir.path().join("jy.db").display()
        ),
    )
    .unwrap();
    for (kind, file) in [("regions", "regions.csv"), ("contacts", "contacts.csv")] {
        let out = jiaoying(&config, &["import", kind, &format!("config/demo/{file}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "import {kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Setup { dir, config, base }
}

/// Posts the demo warning; returns the number of people it calls.
async fn post_warning(base: &str) -> usize {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/warnings"))
        .bearer_auth("crash-feed-token")
        .body(demo_cap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: serde_json::Value = r.json().await.unwrap();
    body["incidents"][0]["callouts"].as_u64().unwrap() as usize
}

/// After a restart: everyone reached, then a graceful stop; only the sends in flight when the
/// process died can have gone twice, each under its own `ref`. Returns the duplicates.
async fn everyone_reached_once_but_in_flight(s: &Setup, gw: &Fake, n: usize) -> usize {
    let mut child = serve(&s.config, &s.base).await;
    let msgs = gw
        .wait_until(60, "everyone reached after the restart", |m| {
            m.iter().map(|s| &s.to).collect::<HashSet<_>>().len() >= n
        })
        .await;
    // A graceful stop this time, so that the last batch is recorded before we look.
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    child.wait().unwrap();
    let distinct: HashSet<&str> = msgs.iter().map(|m| m.to.as_str()).collect();
    assert_eq!(distinct.len(), n);
    // Each send in flight was written as `sending` before its request, is `lost` now, and
    // went again under the same `ref` (a gateway that keeps refs drops the repeat).
    let dups = msgs.len() - n;
    assert!(dups <= BATCH, "{dups} duplicates");
    let mut refs: std::collections::HashMap<&str, HashSet<&str>> = Default::default();
    for m in &msgs {
        refs.entry(m.to.as_str())
            .or_default()
            .insert(m.reference.as_str());
    }
    assert!(refs.values().all(|r| r.len() == 1), "a resend under a new ref");
    use sqlx::Connection;
    let mut db =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", s.dir.path().join("jy.db").display()))
            .await
            .unwrap();
    let lost: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM attempts WHERE result = 'lost'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    let sending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM attempts WHERE result = 'sending'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(
        sending, 0,
        "attempts cut off by the kill are resolved after the restart"
    );
    assert!(
        dups as i64 <= lost,
        "{dups} duplicates but only {lost} sends were in flight"
    );
    let failed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM callouts WHERE state = 'failed'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(failed, 0, "a call-out was given up");
    dups
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_fan_out_loses_no_call_out() {
    let (gw, gw_url) = Fake::start(jiaoying::clock::Clock::system()).await;
    gw.delay_ms.store(15, Ordering::SeqCst);
    let s = setup(&gw_url);
    let mut child = serve(&s.config, &s.base).await;
    let n = post_warning(&s.base).await;
    gw.wait_until(30, "the fan-out to be under way", |m| m.len() >= 60)
        .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = gw.messages().len();
    assert!(
        before < n,
        "the kill came too late to test anything ({before} of {n})"
    );
    everyone_reached_once_but_in_flight(&s, &gw, n).await;
}

/// The only gateway is down, its circuit opens and the sends on their last route wait in
/// memory for its probe (`channel::guard`): a kill -9 then loses none of them. After the
/// restart, with the gateway back, everyone is reached once and nobody was given up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_sends_wait_for_a_probe_loses_nobody() {
    let (gw, gw_url) = Fake::start(jiaoying::clock::Clock::system()).await;
    gw.fail_next.store(usize::MAX / 2, Ordering::SeqCst);
    let s = setup(&gw_url);
    let mut child = serve(&s.config, &s.base).await;
    let n = post_warning(&s.base).await;
    // Five failures open the circuit; the sixth request was in flight then, or is the probe
    // after the 2 s cool-down. Either way the rest of the batch in hand is waiting in memory
    // for a probe when the kill comes (the restart's log counts them as cut off).
    let started = Instant::now();
    while gw.requests.load(Ordering::SeqCst) < 6 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the circuit was never probed ({} requests)",
            gw.requests.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(gw.messages().is_empty(), "the gateway was down: nothing arrived");
    gw.fail_next.store(0, Ordering::SeqCst);
    // Nothing reached a phone before the kill, so nothing can have gone twice.
    assert_eq!(everyone_reached_once_but_in_flight(&s, &gw, n).await, 0);
}
