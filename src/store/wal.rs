//! SQLite's write-ahead log written back to the database file off the commit path.
//!
//! SQLite checkpoints by itself in whichever commit finds the log past 1,000 pages, and a
//! checkpoint syncs the file: in a 50,000-person fan-out every other batch's commit took 30 ms
//! instead of 3, on the one connection every worker waits for. The daemon instead runs
//! [`checkpoints`] on a connection of its own: a passive checkpoint copies what no reader
//! still needs while the writer goes on appending, so a commit only writes the log. The pool's
//! own automatic checkpoint is kept as a backstop at [`BACKSTOP_PAGES`] (for the CLI, which
//! runs no checkpointer, and for a checkpointer that falls behind). Durability is unchanged:
//! every commit is in the log before it is acknowledged, as with `synchronous = NORMAL` before.
//!
//! This module owns only that connection and its loop; it must not write rows.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, ConnectOptions, Row};
use tokio_util::sync::CancellationToken;

use super::{Backend, Store};

/// Pages the log may reach before a commit of the pool checkpoints by itself (64 MiB at
/// 4 KiB pages): past what the checkpointer leaves behind under any load measured.
pub const BACKSTOP_PAGES: i64 = 16_384;

/// How often the checkpointer looks at the log.
const EVERY: Duration = Duration::from_millis(100);

/// One passive checkpoint's result: frames in the log, frames now in the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub log: i64,
    pub copied: i64,
}

/// The checkpointer's own connection (`None` on PostgreSQL, which has no log of ours to
/// write back).
pub async fn connect(store: &Store) -> Result<Option<AnyConnection>> {
    let Some(url) = store.sqlite_url.as_deref() else {
        return Ok(None);
    };
    if store.backend != Backend::Sqlite {
        return Ok(None);
    }
    let conn = AnyConnectOptions::from_str(url)
        .with_context(|| format!("database.url {url:?}"))?
        .disable_statement_logging()
        .connect()
        .await
        .context("opening the WAL checkpointer's connection")?;
    Ok(Some(conn))
}

/// Copies every frame no reader still needs into the database file, without waiting for the
/// writer or any reader.
pub async fn pass(conn: &mut AnyConnection) -> Result<Pass> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut *conn)
        .await
        .context("checkpointing the SQLite WAL")?;
    Ok(Pass {
        log: row.try_get(1)?,
        copied: row.try_get(2)?,
    })
}

/// The daemon's checkpointer: a passive checkpoint every [`EVERY`] until `stop`. A failing
/// pass is logged and tried again; the backstop still bounds the log meanwhile.
pub async fn checkpoints(store: Store, stop: CancellationToken) {
    let mut conn = match connect(&store).await {
        Ok(Some(conn)) => conn,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "no WAL checkpointer: commits checkpoint by themselves");
            return;
        }
    };
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(e) = pass(&mut conn).await {
            tracing::warn!(error = %format!("{e:#}"), "a WAL checkpoint failed; tried again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool leaves the log to the checkpointer (its own automatic checkpoint only as the
    /// backstop), and one pass writes back every frame a large commit left, while what the
    /// pool committed stays readable.
    #[tokio::test]
    async fn a_pass_writes_back_what_the_commits_left_in_the_log() {
        let (store, _dir) = crate::store::temp_sqlite().await;
        let mut conn = connect(&store)
            .await
            .unwrap()
            .expect("a file database has a checkpointer");
        let _ = pass(&mut conn).await.unwrap();

        let mut tx = store.begin().await.unwrap();
        let backstop: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(tx.conn())
            .await
            .unwrap();
        assert_eq!(backstop, BACKSTOP_PAGES);
        sqlx::query("CREATE TABLE filler (body BLOB)")
            .execute(tx.conn())
            .await
            .unwrap();
        // A page a row, 1,200 pages: past SQLite's own 1,000-page threshold, so without the
        // backstop setting the commit would have checkpointed by itself and left nothing to copy.
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1200)
             INSERT INTO filler SELECT randomblob(4000) FROM n",
        )
        .execute(tx.conn())
        .await
        .unwrap();
        tx.commit().await.unwrap();

        let p = pass(&mut conn).await.unwrap();
        assert!(p.log > 1_000, "the commit's frames are in the log: {p:?}");
        assert_eq!(p.copied, p.log, "one pass copies them all: {p:?}");
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM filler")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(rows, 1200);
    }
}
