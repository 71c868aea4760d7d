//! What an after-action report is built from, read in one place. The report itself (totals,
//! roll-ups, who was never reached) is `record::report`, pure; this file only reads.

use anyhow::{Context, Result};

use super::{answers, callouts, incidents, roster, Store};
use crate::config::Policy;
use crate::record::report::{summarise, Report};

pub async fn load(store: &Store, incident_id: i64) -> Result<Option<Report<Policy>>> {
    let Some(incident) = incidents::incident(&mut *store.conn().await?, incident_id).await? else {
        return Ok(None);
    };
    let callouts = callouts::callouts_of_incident(store, incident_id).await?;
    let evacuations = answers::latest_evacuations(store, incident_id).await?;
    let knocks = answers::knock_results(store, incident_id).await?;
    let names = roster::load_regions(store)
        .await
        .context("region names")?
        .into_iter()
        .map(|r| (r.code, r.name))
        .collect();
    Ok(Some(summarise(incident, callouts, &evacuations, &knocks, &names)))
}
