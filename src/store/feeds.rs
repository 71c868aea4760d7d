//! Feed polling state that must outlive a restart: HTTP validators per source and URL, and
//! the index entries already taken. Each call is its own statement (no unit of work): losing
//! one only means a feed is asked again. This file must not fetch or parse anything.

use anyhow::Result;

use super::{insert_rows_with_suffix, placeholders, Store, Val};

/// The `ETag` and `Last-Modified` a server sent with its last full answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

pub async fn validators(store: &Store, source: &str, url: &str) -> Result<Validators> {
    let row: Option<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT etag, last_modified FROM feed_validators WHERE source = $1 AND url = $2")
            .bind(source)
            .bind(url)
            .fetch_optional(&mut *store.conn().await?)
            .await?;
    Ok(row
        .map(|(etag, last_modified)| Validators { etag, last_modified })
        .unwrap_or_default())
}

pub async fn save_validators(store: &Store, source: &str, url: &str, v: &Validators, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO feed_validators (source, url, etag, last_modified, updated_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (source, url) DO UPDATE SET etag = excluded.etag,
            last_modified = excluded.last_modified, updated_at = excluded.updated_at",
    )
    .bind(source)
    .bind(url)
    .bind(v.etag.clone())
    .bind(v.last_modified.clone())
    .bind(now)
    .execute(&mut *store.conn().await?)
    .await?;
    Ok(())
}

/// Which of `entries` this source has already taken.
pub async fn seen(store: &Store, source: &str, entries: &[String]) -> Result<Vec<String>> {
    let mut conn = store.conn().await?;
    let mut out = Vec::new();
    for chunk in entries.chunks(1000) {
        let sql = format!(
            "SELECT entry FROM feed_entries WHERE source = $1 AND entry IN ({})",
            placeholders(2, chunk.len())
        );
        let mut q = sqlx::query_scalar::<_, String>(&sql).bind(source);
        for e in chunk {
            q = q.bind(e.as_str());
        }
        out.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

pub async fn mark_seen(store: &Store, source: &str, entries: &[String], now: i64) -> Result<()> {
    let rows = entries
        .iter()
        .map(|e| vec![Val::from(source), Val::from(e.as_str()), Val::I(now)])
        .collect();
    let mut conn = store.conn().await?;
    insert_rows_with_suffix(
        &mut conn,
        "feed_entries",
        &["source", "entry", "seen_at"],
        rows,
        " ON CONFLICT (source, entry) DO NOTHING",
    )
    .await
}
