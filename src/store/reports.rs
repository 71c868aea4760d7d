//! What an after-action report is built from, read in one place.

use anyhow::{Context, Result};

use super::{answers, incidents, roster, Store};
use crate::record::report::{summarise, Report};

pub async fn load(store: &Store, incident_id: i64) -> Result<Option<Report>> {
    let mut conn = store.pool.acquire().await?;
    let Some(incident) = incidents::incident(&mut conn, incident_id).await? else {
        return Ok(None);
    };
    drop(conn);
    let callouts = incidents::callouts_of_incident(&store.pool, incident_id).await?;
    let evacuations = answers::latest_evacuations(&store.pool, incident_id).await?;
    let names = roster::load_regions(&store.pool)
        .await
        .context("region names")?
        .into_iter()
        .map(|r| (r.code, r.name))
        .collect();
    Ok(Some(summarise(incident, callouts, &evacuations, &names)))
}
