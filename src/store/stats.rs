//! Counts for `/metrics`, read from the database at scrape time so that every instance of a
//! shared database reports the same truth. Plain rows out; naming and formatting the metrics
//! is `core`'s job.

use anyhow::Result;
use sqlx::AnyPool;

/// What the database holds right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Call-outs per state.
    pub callouts: Vec<(String, i64)>,
    /// Jobs waiting (or claimed), per kind.
    pub jobs: Vec<(String, i64)>,
}

pub async fn counts(pool: &AnyPool) -> Result<Counts> {
    let callouts = sqlx::query_as("SELECT state, COUNT(*) FROM callouts GROUP BY state ORDER BY state")
        .fetch_all(pool)
        .await?;
    let jobs = sqlx::query_as("SELECT kind, COUNT(*) FROM jobs GROUP BY kind ORDER BY kind")
        .fetch_all(pool)
        .await?;
    Ok(Counts { callouts, jobs })
}
