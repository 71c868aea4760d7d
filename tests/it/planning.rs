//! Issue 11 §2 and §6: a large plan is written in slices after the warning's first commit and
//! resumed after a kill -9 between two slices (every person planned exactly once, nobody
//! lost), on SQLite and PostgreSQL; the roster index is held by the daemon and rebuilt when an
//! import through another instance moved the roster version on.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::gateway::{self, Fake};
use crate::helpers::{demo_cap, demo_cap_at, repo, spawn, t0, Db, FEED};

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
        .env("JIAOYING_ANSWER_SECRET", "planning-test-secret")
        .env("JIAOYING_TEST_GW_SECRET", gateway::SECRET)
        .env("JIAOYING_PLAN_FEED_TOKEN", "plan-feed-token")
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
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh database for the backend (None: PostgreSQL without JIAOYING_PG_URL), and the
/// PostgreSQL database to drop afterwards.
async fn database(db: Db, dir: &std::path::Path) -> Option<(String, Option<String>)> {
    match db {
        Db::Sqlite => Some((format!("sqlite://{}/jy.db", dir.display()), None)),
        Db::Postgres => {
            let base = std::env::var("JIAOYING_PG_URL").ok()?;
            let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
            let name = format!("jy_plan_{:016x}", rand::random::<u64>());
            sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
                .await
                .unwrap();
            let (prefix, _) = base.rsplit_once('/').unwrap();
            Some((format!("{prefix}/{name}"), Some(name)))
        }
    }
}

async fn kill_between_slices(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let Some((url, pg_name)) = database(db, dir.path()).await else {
        eprintln!("JIAOYING_PG_URL not set: PostgreSQL case skipped");
        return;
    };
    let (gw, gw_url) = Fake::start(jiaoying::clock::Clock::system()).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("jiaoying.toml");
    // Tiny slices: the demo warning's plan takes a hundred transactions, so the kill falls
    // between two of them.
    std::fs::write(
        &config,
        format!(
            r#"
[database]
url = "{url}"
[http]
bind = "127.0.0.1:{port}"
public_url = "{base}"
[dispatch]
batch = 32
workers = 1
poll = "50ms"
lease = "2s"
plan_first = 16
plan_slice = 8
[channels]
sms = ["fake"]
[gateways.fake]
kind = "generic"
url = "{gw_url}"
secret_env = "JIAOYING_TEST_GW_SECRET"
[[auth.tokens]]
name = "feed"
role = "feed"
token_env = "JIAOYING_PLAN_FEED_TOKEN"
"#
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
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();

    let mut child = serve(&config, &base).await;
    // The POST answers once the first slice is committed and the whole plan decided (its
    // size is in the answer); the daemon's planner task writes the rest after that.
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/warnings"))
        .bearer_auth("plan-feed-token")
        .body(demo_cap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: serde_json::Value = r.json().await.unwrap();
    let total = body["incidents"][0]["callouts"].as_i64().unwrap();
    // Kill as soon as a slice after the first is committed and the plan is not finished.
    let start = Instant::now();
    let incident = loop {
        let row: Option<(i64, i64, Option<i64>)> =
            sqlx::query_as("SELECT incident_id, done, finished_at FROM planning")
                .fetch_optional(&pool)
                .await
                .unwrap();
        if let Some((incident, done, None)) = row {
            if done > 16 {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                break incident;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no slice after the first was written: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let (done, finished): (i64, Option<i64>) =
        sqlx::query_as("SELECT done, finished_at FROM planning WHERE incident_id = $1")
            .bind(incident)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        finished.is_none() && done < total,
        "the kill came too late to test anything ({done} of {total} planned)"
    );

    // Restarted: the plan job's claim runs out (2 s) and a worker resumes the plan.
    let mut child = serve(&config, &base).await;
    let start = Instant::now();
    loop {
        let finished: Option<i64> =
            sqlx::query_scalar("SELECT finished_at FROM planning WHERE incident_id = $1")
                .bind(incident)
                .fetch_one(&pool)
                .await
                .unwrap();
        if finished.is_some() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the plan was not resumed after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let msgs = gw
        .wait_until(120, "everyone reached after the restart", |m| {
            m.iter().map(|s| &s.to).collect::<HashSet<_>>().len() as i64 >= total
        })
        .await;
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    child.wait().unwrap();

    // Every person of the plan exactly once, with one `callout.planned` entry each.
    let (n, people, done): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT c.contact_id), MAX(p.done) FROM callouts c
         JOIN planning p ON p.incident_id = c.incident_id WHERE c.incident_id = $1 AND c.parent_id IS NULL",
    )
    .bind(incident)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (n, people, done),
        (total, total, total),
        "call-outs, people, cursor"
    );
    let planned: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM ledger WHERE kind = 'callout.planned' AND subject IN
         (SELECT 'callout:' || CAST(id AS TEXT) FROM callouts WHERE incident_id = $1)",
    )
    .bind(incident)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(planned, total, "one ledger entry per planned call-out");
    let plan_jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'plan'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(plan_jobs, 0, "the plan job ended with the plan");
    let distinct: HashSet<&str> = msgs.iter().map(|m| m.to.as_str()).collect();
    assert_eq!(distinct.len() as i64, total);
    pool.close().await;
    let out = jiaoying(&config, &["ledger", "verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "ledger verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if let (Some(name), Ok(base)) = (pg_name, std::env::var("JIAOYING_PG_URL")) {
        let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
        sqlx::Executor::execute(&mut conn, format!("DROP DATABASE {name} WITH (FORCE)").as_str())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_slices_plans_everyone_once_sqlite() {
    kill_between_slices(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_slices_plans_everyone_once_postgres() {
    kill_between_slices(Db::Postgres).await;
}

/// In process, small slices: the POST's answer counts everyone, the incident has them all
/// once, the plan is finished and its job gone, and every one of them is sent to.
async fn sliced_plan_is_whole(db: Db) {
    let Some(app) = spawn(db, "[dispatch]\nplan_first = 10\nplan_slice = 7\n").await else {
        return;
    };
    let (status, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(status, 202, "{body}");
    let id = body["incidents"][0]["id"].as_i64().unwrap();
    let n = body["incidents"][0]["callouts"].as_i64().unwrap();
    assert!(n > 10, "the demo warning plans more than one slice ({n})");
    let q = |sql: &str| sql.replace("$ID", &id.to_string());
    assert_eq!(
        app.scalar(&q(
            "SELECT COUNT(DISTINCT contact_id) FROM callouts WHERE incident_id = $ID"
        ))
        .await,
        n
    );
    assert_eq!(
        app.scalar(&q("SELECT COUNT(*) FROM callouts WHERE incident_id = $ID"))
            .await,
        n
    );
    assert_eq!(
        app.scalar(&q(
            "SELECT COUNT(*) FROM planning WHERE incident_id = $ID AND done = total AND finished_at IS NOT NULL"
        ))
        .await,
        1
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'plan'").await,
        0
    );
    assert_eq!(
        app.scalar(&q(
            "SELECT COUNT(*) FROM ledger WHERE kind = 'incident.planned' AND subject = 'incident:$ID'"
        ))
        .await,
        1
    );
    app.gw
        .wait_until(60, "everyone sent to", |m| {
            m.iter().map(|s| &s.to).collect::<HashSet<_>>().len() as i64 >= n
        })
        .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliced_plan_is_whole_sqlite() {
    sliced_plan_is_whole(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliced_plan_is_whole_postgres() {
    sliced_plan_is_whole(Db::Postgres).await;
}

/// The roster index is held between warnings and rebuilt when another instance imported.
async fn import_elsewhere_is_seen(db: Db) {
    let Some(app) = spawn(db, "").await else {
        return;
    };
    let held = app.core.roster_version().await.expect("built at start");
    // A warning does not rebuild it.
    let (status, _) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(status, 202);
    assert_eq!(app.core.roster_version().await, Some(held));

    // Another instance imports a new village leader for a village of 容县.
    let other = app.second_instance().await;
    let region: String = sqlx::query_scalar(
        "SELECT code FROM regions WHERE level = 'village' AND code LIKE '450921%' ORDER BY code LIMIT 1",
    )
    .fetch_one(app.db())
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("new.csv");
    std::fs::write(
        &csv,
        format!(
            "key,name,phone,email,role,region,backup,superior,channels\n\
             new-leader-1,新村长,+8617099990001,,village_leader,{region},,,\n"
        ),
    )
    .unwrap();
    let r = jiaoying::ingest::import::import(
        &other.core.store,
        jiaoying::ingest::import::Kind::Contacts,
        &csv,
        false,
        false,
        other.core.now(),
    )
    .await;
    assert!(r.is_ok(), "{:?}", r.err());
    other.stop().await;

    // The first instance's next warning sees the new person.
    app.advance(Duration::from_secs(60));
    let (status, body) = app
        .post_cap(&demo_cap_at(t0() + chrono::Duration::minutes(1)), FEED)
        .await;
    assert_eq!(status, 202, "{body}");
    assert!(app.core.roster_version().await > Some(held), "rebuilt");
    let called = app
        .scalar(
            "SELECT COUNT(*) FROM callouts c JOIN contacts k ON k.id = c.contact_id WHERE k.key = 'new-leader-1'",
        )
        .await;
    assert!(called >= 1, "the new village leader was not called");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_through_another_instance_is_seen_sqlite() {
    import_elsewhere_is_seen(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_through_another_instance_is_seen_postgres() {
    import_elsewhere_is_seen(Db::Postgres).await;
}
