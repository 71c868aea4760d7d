//! The database: one store for SQLite and PostgreSQL through sqlx's `Any` driver, so every
//! query is written once. Where the two differ (job claiming, id blocks, locking the ledger
//! head) the difference lives in this module and `jobs.rs`, keyed on [`Backend`].
//! Times are Unix milliseconds; ids are `i64`.
//!
//! The boundary (DESIGN principle 10): every SQL statement of the daemon is written under this
//! folder, and rows come out as domain types, parsed once here; a row that does not read is an
//! error naming it, never a default. The pool is private. Work outside a transaction calls the
//! files' functions taking a [`Store`]; a unit of work is a [`Tx`], and everything it reads or
//! writes is a method of it, so that nothing inside a transaction reads through the pool (on
//! SQLite the pool has one connection, which the open transaction holds: such a read would
//! wait for ever; the pool's acquire timeout turns that mistake into an error).
//!
//! **Lock order** (PostgreSQL; SQLite has one writer and cannot deadlock). Every writer
//! takes its row locks in one order, so that two units of work never wait on each other in a
//! circle: (0) `attempts` rows (a send's outcome, a receipt), (1) `incidents` rows, then
//! `callouts` rows, each in ascending id order (`incidents::lock_of_callouts`, taken by
//! whoever decides from what it reads who is called already; `callouts::lock`, taken before
//! a multi-row change), (2) `jobs` rows, (3) the ledger head
//! (`ledger_head`, `SELECT … FOR UPDATE`) **last**, just before commit. A [`Tx`] keeps the
//! ledger records it is handed (`Tx::append`, `Tx::record`, and the store's own methods that
//! write an entry) and writes them in [`Tx::commit`], so the head is taken last whatever order
//! the caller wrote its changes and their entries in; code that writes to the ledger through a
//! bare connection (`deliver`) does so as its last statement before the jobs' own end. Before
//! this, ingest took the head with its first entry (`warning.received`) and then locked the
//! call-outs a Cancel or Update touches, while an answer held a call-out and waited for the
//! head: a deadlock PostgreSQL broke by failing one of them.
//!
//! This module must not decide anything: the decisions (who is called, what an answer or a
//! deadline does) come from `domain` and `target` and are applied here.

pub mod answers;
pub mod attempts;
mod callout_row;
pub mod callouts;
pub mod feeds;
pub mod inbound;
pub mod incidents;
pub mod jobs;
pub mod ledger;
pub mod planning;
pub mod reports;
pub mod responses;
pub mod roster;
mod rows;
pub mod schema;
pub mod stats;
pub mod tamper;
mod task;
pub mod users;
pub mod wal;
pub mod warnings;

pub use rows::{
    alloc_ids, anonymous, bind_all, in_list, insert_rows, insert_rows_with_suffix, placeholders, update_rows,
    Val,
};

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions};

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How long a caller waits for SQLite's one connection. Far above any transaction the daemon
/// writes (a 10,000-person fan-out commits in about a second), so reaching it means a read
/// through the pool while a unit of work holds the connection: an error, not a hang. In unit
/// tests shorter, so that the test of that mistake is quick, but not so short that opening a
/// database under CI's load (258 tests on 2 cores) runs into it: 300 ms once did.
const SQLITE_ACQUIRE: Duration = if cfg!(test) {
    Duration::from_secs(2)
} else {
    Duration::from_secs(10)
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The SQLite database's URL, for connections of its own outside the pool (`wal`).
    sqlite_url: Option<String>,
}

/// A unit of work: one transaction, committed or rolled back as a whole. Every read and write
/// it makes is one of its methods (defined beside their SQL in this folder's files).
pub struct Tx {
    tx: sqlx::Transaction<'static, Any>,
    backend: Backend,
    /// Ledger records of this unit of work and their times, written at commit (lock order).
    ledger: Vec<(i64, Vec<ledger::Record>)>,
}

impl Tx {
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Writes the ledger records kept so far (taking the ledger head last: see the lock order
    /// above), then commits.
    pub async fn commit(mut self) -> Result<()> {
        // One append, so the head is read and moved once per unit of work.
        let records: Vec<(i64, ledger::Record)> = std::mem::take(&mut self.ledger)
            .into_iter()
            .flat_map(|(now, records)| records.into_iter().map(move |r| (now, r)))
            .collect();
        ledger::append_at(&mut self.tx, self.backend, records).await?;
        self.tx.commit().await.context("committing")
    }

    /// Keeps ledger records for [`Tx::commit`].
    pub(crate) fn defer_ledger(&mut self, now: i64, records: Vec<ledger::Record>) {
        if !records.is_empty() {
            self.ledger.push((now, records));
        }
    }

    pub async fn rollback(self) -> Result<()> {
        self.tx.rollback().await.context("rolling back")
    }

    fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

// TODO(issue 8): deliver/ passes its unit of work to the store's connection-level functions
// (`callouts::transition(&mut tx, ..)`, `ledger::append`, `insert_rows` …) and writes a few
// statements of its own; when it moves to `Tx` methods these two impls go.
impl Deref for Tx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

impl Store {
    /// Connects, creating an SQLite file (and its folder) when missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            anyhow::bail!("database.url must start with sqlite:// or postgres:// (got {url:?})");
        };
        let url = match backend {
            Backend::Sqlite => sqlite_url(url)?,
            Backend::Postgres => url.to_string(),
        };
        let opts = AnyConnectOptions::from_str(&url)
            .with_context(|| format!("database.url {url:?}"))?
            .disable_statement_logging();
        let pool = match backend {
            // One connection: SQLite has one writer anyway, and this rules out SQLITE_BUSY.
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(SQLITE_ACQUIRE)
                    // No ping before each acquire: the one connection is to a local file and
                    // cannot have gone away, and every ping was a round trip through SQLite's
                    // worker thread in front of every claim, read and unit of work.
                    .test_before_acquire(false)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            for pragma in [
                                "PRAGMA journal_mode = WAL",
                                "PRAGMA synchronous = NORMAL",
                                "PRAGMA foreign_keys = ON",
                                "PRAGMA busy_timeout = 5000",
                                // Statement journals (every multi-row write with foreign keys
                                // on keeps one) in memory, not in temporary files.
                                "PRAGMA temp_store = MEMORY",
                                // 4 MiB of page cache, not 2: a plan's slice of 4,096 rows and
                                // its indexes fit, instead of spilling to the WAL mid-transaction.
                                // 8 and 16 MiB were no faster at 50,000 and held more at peak.
                                "PRAGMA cache_size = -4096",
                            ] {
                                sqlx::query(pragma).execute(&mut *conn).await?;
                            }
                            // The daemon checkpoints on a connection of its own (`wal`): a
                            // commit past 1,000 pages no longer syncs the file itself.
                            let backstop = format!("PRAGMA wal_autocheckpoint = {}", wal::BACKSTOP_PAGES);
                            sqlx::query(&backstop).execute(&mut *conn).await?;
                            Ok(())
                        })
                    })
                    // SQLite ends a transaction by itself on some errors (a full disk, an I/O
                    // error). sqlx's ROLLBACK then fails and it still counts the transaction as
                    // open, so its next `begin` is a SAVEPOINT, whose failure leaves a real
                    // transaction open for good: nothing more committed, the write lock held.
                    // A connection that comes back counted inside a transaction is closed
                    // (closing rolls back whatever is open) and the pool opens a fresh one.
                    .after_release(|conn, _| {
                        use sqlx::Connection;
                        let clean = !conn.is_in_transaction();
                        if !clean {
                            tracing::warn!("a database connection came back inside a transaction: closed, a fresh one is opened");
                        }
                        Box::pin(async move { Ok(clean) })
                    })
                    .connect_with(opts)
                    .await
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(max_connections.max(2))
                    .connect_with(opts)
                    .await
            }
        }
        .with_context(|| format!("connecting to the database ({})", redact(&url)))?;
        let sqlite_url = (backend == Backend::Sqlite).then_some(url);
        Ok(Store {
            pool,
            backend,
            sqlite_url,
        })
    }

    /// Before serving, on SQLite: writes back the WAL a roster import (or the last run) left,
    /// so that the first warning's commit does not pay for it (at 50,000 contacts imported,
    /// the first slice's commit took 94 ms, mostly that checkpoint). PostgreSQL: nothing.
    pub async fn settle(&self) -> Result<()> {
        if self.backend == Backend::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await
                .context("checkpointing the SQLite WAL before serving")?;
        }
        Ok(())
    }

    pub async fn migrate(&self) -> Result<()> {
        let m = match self.backend {
            Backend::Sqlite => &SQLITE,
            Backend::Postgres => &POSTGRES,
        };
        m.run(&self.pool).await.context("applying migrations")?;
        Ok(())
    }

    /// True when the database answers and every migration is applied (`/readyz`).
    pub async fn ready(&self) -> Result<()> {
        let m = match self.backend {
            Backend::Sqlite => &SQLITE,
            Backend::Postgres => &POSTGRES,
        };
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE")
            .fetch_one(&mut *self.conn().await?)
            .await
            .context("database not reachable or not migrated")?;
        let wanted = m.iter().count() as i64;
        anyhow::ensure!(applied >= wanted, "{applied} of {wanted} migrations applied");
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Opens a unit of work.
    pub async fn begin(&self) -> Result<Tx> {
        let tx = self.pool.begin().await.map_err(|e| self.waited(e))?;
        Ok(Tx {
            tx,
            backend: self.backend,
            ledger: Vec::new(),
        })
    }

    /// Closes every connection (graceful stop).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Caps an SQLite database's size at its current pages plus `pages` (None: lifts the
    /// cap) on the store's one connection: writes that would grow it then fail with
    /// `SQLITE_FULL`, as on a full disk. For the fault tests, which play a full disk without
    /// a tmpfs; nothing on PostgreSQL.
    pub async fn cap_sqlite_growth(&self, pages: Option<i64>) -> Result<()> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        let now: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&mut *conn)
            .await?;
        let max = pages.map_or(1_073_741_823, |p| now + p);
        sqlx::query(&format!("PRAGMA max_page_count = {max}"))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// How many jobs of this kind wait (`jobs.rs` owns the statement).
    pub async fn pending_jobs(&self, kind: jobs::Kind) -> Result<i64> {
        jobs::pending(&self.pool, kind).await
    }

    /// When the next job of any kind falls due (unix ms): the simulation's clock jumps there.
    pub async fn next_job_due(&self) -> Result<Option<i64>> {
        jobs::next_due(&self.pool, jobs::PARKED).await
    }

    /// The pool itself, for the statements not moved here yet.
    // TODO(issue 8): deliver/http move to store functions
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A connection for reads outside a unit of work.
    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<Any>> {
        self.pool.acquire().await.map_err(|e| self.waited(e))
    }

    /// Says what a pool time-out on SQLite almost always means.
    fn waited(&self, e: sqlx::Error) -> anyhow::Error {
        match (e, self.backend) {
            (sqlx::Error::PoolTimedOut, Backend::Sqlite) => anyhow::anyhow!(
                "no database connection free after {SQLITE_ACQUIRE:?}: SQLite has one, and an open unit of \
                 work holds it; read through that unit of work (store::Tx), not through the store"
            ),
            (e, _) => anyhow::Error::from(e).context("waiting for a database connection"),
        }
    }
}

/// `sqlite://data/x.db` → an absolute-or-relative path with `mode=rwc`, creating the folder.
fn sqlite_url(url: &str) -> Result<String> {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:" && !path.is_empty() {
        if let Some(dir) = Path::new(path).parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
        }
    }
    let query = if query.contains("mode=") {
        query.to_string()
    } else if query.is_empty() {
        "mode=rwc".to_string()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}

/// Hides a password in a database URL for error messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A migrated SQLite store in a fresh temporary folder, for unit tests (the folder is removed
/// when the returned guard is dropped).
#[cfg(test)]
pub(crate) async fn temp_sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/t.db", dir.path().display()), 1)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (store, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        let d = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/sub/x.db", d.path().display());
        assert!(sqlite_url(&url).unwrap().ends_with("x.db?mode=rwc"));
        assert!(d.path().join("sub").is_dir());
        assert_eq!(placeholders(3, 3), "$3, $4, $5");
    }

    /// On SQLite the pool has one connection; reading through the store while a unit of work
    /// holds it is a mistake that must fail at once with a reason, not hang.
    #[tokio::test]
    async fn a_read_through_the_store_inside_a_unit_of_work_is_an_error_not_a_hang() {
        let (store, _dir) = temp_sqlite().await;
        let tx = store.begin().await.unwrap();
        let started = std::time::Instant::now();
        let e = incidents::list(&store, 1).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            format!("{e:#}").contains("read through that unit of work"),
            "{e:#}"
        );
        tx.rollback().await.unwrap();
        assert!(incidents::list(&store, 1).await.unwrap().is_empty());
    }

    /// SQLite may end a transaction by itself on an error (a full disk, an I/O error; here a
    /// trigger's `RAISE(ROLLBACK)`, the same thing on purpose). sqlx's ROLLBACK then fails and
    /// it counts the transaction as still open, so the next unit of work became a savepoint
    /// whose failure left a real transaction open for good: nothing was committed after it, and
    /// the write lock was held (found by `bench/faults 10000 sqlite diskfull`). The connection
    /// is now closed when it comes back in that state.
    #[tokio::test]
    async fn a_transaction_sqlite_ended_by_itself_does_not_poison_the_connection() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("t.db");
        let store = Store::connect(&format!("sqlite://{}", path.display()), 1)
            .await
            .unwrap();
        sqlx::raw_sql(
            "CREATE TABLE t (x INTEGER PRIMARY KEY);
             CREATE TRIGGER boom BEFORE INSERT ON t WHEN NEW.x = 0
             BEGIN SELECT RAISE(ROLLBACK, 'the disk is full'); END;",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let insert = |x: i64| sqlx::query("INSERT INTO t (x) VALUES ($1)").bind(x);
        // SQLite rolls this one back itself.
        let mut tx = store.begin().await.unwrap();
        assert!(insert(0).execute(tx.conn()).await.is_err());
        drop(tx);
        // A statement error that leaves its transaction open, then rolled back.
        let mut tx = store.begin().await.unwrap();
        insert(1).execute(tx.conn()).await.unwrap();
        assert!(insert(1).execute(tx.conn()).await.is_err());
        drop(tx);
        // A unit of work that commits must be committed.
        let mut tx = store.begin().await.unwrap();
        insert(2).execute(tx.conn()).await.unwrap();
        tx.commit().await.unwrap();

        use sqlx::Connection;
        let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let seen: Vec<i64> = sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(&mut other)
            .await
            .unwrap();
        assert_eq!(seen, vec![2], "the last unit of work was not committed");
        sqlx::raw_sql("PRAGMA busy_timeout = 1000; BEGIN IMMEDIATE; ROLLBACK;")
            .execute(&mut other)
            .await
            .expect("the write lock is free");
    }
}
