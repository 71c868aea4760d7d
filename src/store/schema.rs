//! Opening a database for a command that only reads (report, ledger verify): never creates a
//! file, never migrates, and says what to do when the database is missing or has no schema
//! instead of letting the first query fail with "no such table".

use std::path::Path;

use anyhow::{bail, Result};

use super::{redact, Store};

/// What to tell someone whose database has no jiaoying tables.
pub const ADVICE: &str = "run `jiaoying migrate` (or `jiaoying serve`, which migrates) to create it, \
    or point at another database with `--database URL` / JIAOYING_DATABASE__URL \
    (after `jiaoying demo`: --database sqlite://data/demo.db)";

/// The store at `url`, which must exist and hold the schema.
pub async fn open_existing(url: &str, max_connections: u32) -> Result<Store> {
    if let Some(path) = sqlite_path(url) {
        if path != ":memory:" && !Path::new(path).exists() {
            bail!("数据库不存在 / no database at {path}: {ADVICE}");
        }
    }
    let store = Store::connect(url, max_connections).await?;
    require(&store, url).await?;
    Ok(store)
}

/// Fails with [`ADVICE`] when the migrations never ran here.
pub async fn require(store: &Store, url: &str) -> Result<()> {
    // `ledger_head` is created by the first migration and always has its one row.
    let probe = sqlx::query("SELECT seq FROM ledger_head WHERE id = 1")
        .fetch_optional(&mut *store.conn().await?)
        .await;
    match probe {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(_)) => bail!(
            "数据库没有叫应的表 / the database {} has no jiaoying tables: {ADVICE}",
            redact(url)
        ),
        Err(e) => Err(e.into()),
    }
}

/// The file of a `sqlite:` URL, without its query.
pub fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    Some(rest.split_once('?').map_or(rest, |(p, _)| p))
}
