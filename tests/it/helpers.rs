//! Starting the daemon in-process against a fresh database, and talking to it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use jiaoying::app::App;
use jiaoying::clock::Clock;
use jiaoying::config::{Role, Settings};
use jiaoying::core::{ApiToken, Core, Overrides};
use tokio_util::sync::CancellationToken;

use crate::gateway::{self, Fake};

pub const FEED: &str = "feed-token-0123456789";
pub const OPERATOR: &str = "operator-token-0123456789";
pub const VIEWER: &str = "viewer-token-0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub base: String,
    pub core: Arc<Core>,
    pub gw: Fake,
    pub http: reqwest::Client,
    /// The test's own connections to the daemon's database, for its raw SQL (the daemon's
    /// pool is the store's alone).
    db: sqlx::AnyPool,
    stop: CancellationToken,
    pg_database: Option<String>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh database URL (and, for PostgreSQL, the database to drop afterwards), or None when
/// the backend is not available (PostgreSQL without JIAOYING_PG_URL).
async fn database(db: Db, dir: &Path) -> Option<(String, Option<String>)> {
    match db {
        Db::Sqlite => Some((format!("sqlite://{}/jy.db", dir.display()), None)),
        Db::Postgres => {
            let base = std::env::var("JIAOYING_PG_URL").ok()?;
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&base)
                .await
                .expect("JIAOYING_PG_URL must reach PostgreSQL");
            let name = format!("jy_test_{:016x}", rand::random::<u64>());
            sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
                .await
                .unwrap();
            let (prefix, _) = base
                .rsplit_once('/')
                .expect("a database URL with a database name");
            Some((format!("{prefix}/{name}"), Some(name)))
        }
    }
}

/// The instant every test starts at unless it names another: Wednesday 15 July 2026, 10:00
/// in Beijing. No test reads the machine's date or hour.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 15, 2, 0, 0).unwrap()
}

/// An instant given in Beijing time (`"2026-12-31 23:59:59"`).
pub fn beijing(s: &str) -> DateTime<Utc> {
    let t = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
    chrono::FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .from_local_datetime(&t)
        .unwrap()
        .with_timezone(&Utc)
}

/// Starts the daemon with the demo roster and a fake SMS gateway; `extra` is TOML applied on
/// top of the test settings. Its clock reads [`t0`] at start and then moves with real time.
pub async fn spawn(db: Db, extra: &str) -> Option<TestApp> {
    spawn_at(db, extra, Clock::starting_at(t0())).await
}

/// As [`spawn`], with the clock given (frozen at a shift boundary, say).
pub async fn spawn_at(db: Db, extra: &str, clock: Clock) -> Option<TestApp> {
    spawn_with(db, extra, &repo().join("config/demo"), clock).await
}

pub async fn spawn_with_roster(db: Db, extra: &str, roster: &Path) -> Option<TestApp> {
    spawn_with(db, extra, roster, Clock::starting_at(t0())).await
}

pub async fn spawn_with(db: Db, extra: &str, roster: &Path, clock: Clock) -> Option<TestApp> {
    jiaoying::app::telemetry::init();
    let dir = tempfile::tempdir().unwrap();
    let (url, pg_database) = database(db, dir.path()).await?;
    let (gw, gw_url) = Fake::start(clock.clone()).await;
    // Same value in every test: the environment is shared by the test threads.
    std::env::set_var("JIAOYING_TEST_GW_SECRET", gateway::SECRET);
    let toml = format!(
        r#"
[database]
url = "{url}"
[http]
bind = "127.0.0.1:0"
public_url = "http://jy.test"
[dispatch]
poll = "50ms"
retry_backoff = ["100ms", "200ms"]
[channels]
sms = ["fake"]
email = []
voice = []
[gateways.fake]
kind = "generic"
url = "{gw_url}"
secret_env = "JIAOYING_TEST_GW_SECRET"
"#
    );
    // `extra` is a layer of its own, so it may redefine any table above.
    let settings = Settings::from_toml_layers(&[&toml, extra]).unwrap();
    let core = open_core(settings, clock).await;
    jiaoying::ingest::import::import_all(&core.store, roster, core.now())
        .await
        .unwrap();
    let db = test_pool(&url).await;
    let (base, stop, task) = start(core.clone()).await;
    Some(TestApp {
        base,
        core,
        gw,
        http: reqwest::Client::new(),
        db,
        stop,
        pg_database,
        task,
        _dir: dir,
    })
}

impl TestApp {
    /// POSTs a CAP message and, when it was accepted, waits until its whole plan is written:
    /// a large plan's first slice is committed with the warning and the rest written by the
    /// daemon's planner task after the 202 (issue 11 §2), and most tests count call-outs.
    pub async fn post_cap(&self, body: &[u8], token: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.post_cap_nowait(body, token).await;
        if status == 202 {
            self.wait_planned(60).await;
        }
        (status, body)
    }

    /// Waits until no plan is being written.
    pub async fn wait_planned(&self, secs: u64) {
        let started = std::time::Instant::now();
        while self
            .scalar("SELECT COUNT(*) FROM planning WHERE finished_at IS NULL")
            .await
            > 0
        {
            assert!(
                started.elapsed() < Duration::from_secs(secs),
                "a plan was still being written after {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// POSTs a CAP message and returns as soon as the daemon answers.
    pub async fn post_cap_nowait(&self, body: &[u8], token: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/api/v1/warnings", self.base))
            .bearer_auth(token)
            .header("content-type", "application/cap+xml")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// A page's text, without a token (`/metrics`, answer pages).
    pub async fn text(&self, path: &str) -> String {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        r.text().await.unwrap()
    }

    /// An SMS reply through the gateway's signed inbound hook.
    pub async fn reply(&self, from: &str, text: &str) -> (u16, serde_json::Value) {
        let now = self.core.clock.now();
        let (body, headers) = gateway::signed(
            &serde_json::json!({"from": from, "text": text, "at": now.to_rfc3339()}),
            now.timestamp(),
        );
        let mut req = self
            .http
            .post(format!("{}/hooks/fake/inbound", self.base))
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Moves the test's clock forward and wakes the workers, as if that much time had passed.
    pub fn advance(&self, d: Duration) {
        self.core.clock.advance(d);
        self.core.wake.notify_waiters();
    }

    /// The test's own pool on the daemon's database: what a test reads or changes behind the
    /// daemon's back goes through it, never through the store.
    pub fn db(&self) -> &sqlx::AnyPool {
        &self.db
    }

    /// Every call-out of `incident` read as a send batch or a deadline reads it (one JSON
    /// text made by the database, `callouts_by_id`) is the call-out read row by row (as the
    /// report reads it): the same columns, nulls and types on either backend.
    pub async fn assert_callout_reads_agree(&self, incident: i64) {
        use jiaoying::store::{callouts, Backend};
        // Both reads in one snapshot: the daemon may still be escalating meanwhile.
        let mut tx = self.core.store.begin().await.unwrap();
        if tx.backend() == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        let mut by_rows = tx.callouts_of_incident(incident).await.unwrap();
        assert!(!by_rows.is_empty(), "incident {incident} has no call-outs");
        let ids: Vec<i64> = by_rows.iter().map(|c| c.id).collect();
        let mut by_json = callouts::callouts_by_id(&mut tx, &ids).await.unwrap();
        tx.rollback().await.unwrap();
        by_rows.sort_by_key(|c| c.id);
        by_json.sort_by_key(|c| c.id);
        assert_eq!(by_json.len(), by_rows.len());
        for (j, r) in by_json.iter().zip(&by_rows) {
            assert_eq!(format!("{j:?}"), format!("{r:?}"));
        }
    }

    /// Waits until `n` call-outs are recorded as sent, as the test's own connection sees
    /// them (so committed, not only written), failing with `what` after `secs` seconds.
    pub async fn wait_sent(&self, n: i64, secs: u64, what: &str) {
        let started = std::time::Instant::now();
        while self
            .scalar("SELECT COUNT(*) FROM callouts WHERE state IN ('sent', 'delivered')")
            .await
            < n
        {
            assert!(started.elapsed() < Duration::from_secs(secs), "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(self.db())
            .await
            .unwrap()
    }

    /// Runs a statement on the test's own connection.
    pub async fn execute(&self, sql: &str) {
        sqlx::query(sql).execute(self.db()).await.unwrap();
    }

    /// Drops the demo duty rosters, so that every holder of a role is called whatever the day:
    /// for tests whose oracle is the contacts sheet alone (duty resolution has its own tests).
    pub async fn without_duty_rosters(&self) {
        self.execute("DELETE FROM duty_shifts").await;
        // A roster change behind the daemon's back: move the version on as the store's
        // writes do, so the daemon's held roster index is rebuilt for the next warning.
        self.execute("UPDATE roster_version SET version = version + 1")
            .await;
    }

    /// Makes every pending answer deadline due now: escalation tests then depend on what was
    /// answered, not on how fast a loaded machine sent and answered everything.
    pub async fn expire_deadlines(&self) {
        self.execute("UPDATE jobs SET due_at = 0 WHERE kind = 'deadline'")
            .await;
        self.core.wake.notify_waiters();
    }

    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("graceful stop")
            .unwrap()
            .unwrap();
        self.db.close().await;
        if let (Some(name), Ok(base)) = (self.pg_database, std::env::var("JIAOYING_PG_URL")) {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
            sqlx::Executor::execute(&mut conn, format!("DROP DATABASE {name} WITH (FORCE)").as_str())
                .await
                .unwrap();
        }
    }
}

/// A core on `settings` with the test tokens and answer secret.
async fn open_core(settings: Settings, clock: Clock) -> Arc<Core> {
    let tokens = [
        ("feed", Role::Feed, FEED),
        ("op", Role::Operator, OPERATOR),
        ("view", Role::Viewer, VIEWER),
    ]
    .into_iter()
    .map(|(n, r, t)| ApiToken {
        name: n.into(),
        role: r,
        token: t.into(),
    })
    .collect();
    Core::open(
        settings,
        Overrides {
            answer_secret: Some("test-answer-secret".into()),
            tokens,
            clock: Some(clock),
        },
    )
    .await
    .unwrap()
}

type Running = (
    String,
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
);

/// Binds port 0 and runs the daemon (server and workers) in a task.
async fn start(core: Arc<Core>) -> Running {
    let app = App::bind(core).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run(stop.clone()));
    (base, stop, task)
}

/// Another daemon on the same database, gateway and clock: a second instance.
pub struct Instance {
    pub core: Arc<Core>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Instance {
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("graceful stop")
            .unwrap()
            .unwrap();
    }
}

impl TestApp {
    /// A second daemon sharing this one's database, settings, gateway and clock (several
    /// instances on PostgreSQL).
    pub async fn second_instance(&self) -> Instance {
        let core = open_core((*self.core.settings).clone(), self.core.clock.clone()).await;
        let (_, stop, task) = start(core.clone()).await;
        Instance { core, stop, task }
    }

    /// A graceful stop (what SIGTERM does) in the middle of whatever is running, then a new
    /// daemon on the same database, gateway and clock: a restart.
    pub async fn restart(mut self) -> TestApp {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(60), &mut self.task)
            .await
            .expect("graceful stop")
            .unwrap()
            .unwrap();
        let core = open_core((*self.core.settings).clone(), self.core.clock.clone()).await;
        let (base, stop, task) = start(core.clone()).await;
        TestApp {
            base,
            core,
            stop,
            task,
            ..self
        }
    }
}

/// A second pool on the test's database. SQLite allows it in WAL mode (the daemon set it):
/// readers never wait, a writer waits for the daemon's write to finish (busy timeout).
async fn test_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let sqlite = url.starts_with("sqlite:");
    sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if sqlite {
                    sqlx::Executor::execute(&mut *conn, "PRAGMA busy_timeout = 5000").await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
        .expect("the test's own connection to its database")
}

/// The demo warning sent at [`t0`] (and a unique identifier).
pub fn demo_cap() -> Vec<u8> {
    demo_cap_at(t0())
}

/// The demo warning sent at `at`.
pub fn demo_cap_at(at: DateTime<Utc>) -> Vec<u8> {
    let raw = std::fs::read_to_string(repo().join("config/demo/rainstorm-red.cap.xml")).unwrap();
    let raw = jiaoying::tools::demo::as_of_now(&raw, at);
    raw.replace(
        "45090041600000_20260612023000",
        &format!("45090041600000_{}", rand::random::<u32>()),
    )
    .into_bytes()
}

/// The answer token inside a message text.
pub fn token_in(text: &str) -> String {
    let at = text.find("/a/").expect("an answer link in the message") + 3;
    text[at..]
        .split(|c: char| c.is_whitespace() || c == '。')
        .next()
        .unwrap()
        .to_string()
}
