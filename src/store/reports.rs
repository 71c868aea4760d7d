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

/// The same report with its state rebuilt from the ledger alone (`record::fold`): the
/// incident's state, each call-out's state and answer, the evacuation counts and door-knock
/// results as the entries say, the people as the roster says. Equal to [`load`] when the
/// record holds.
pub async fn load_from_ledger(store: &Store, incident_id: i64) -> Result<Option<Report<Policy>>> {
    let Some(incident) = incidents::incident(&mut *store.conn().await?, incident_id).await? else {
        return Ok(None);
    };
    let callouts = callouts::callouts_of_incident(store, incident_id).await?;
    let folded = super::ledger::fold_all(store).await?;
    let inputs = folded
        .report_inputs(incident, callouts)
        .map_err(anyhow::Error::msg)?;
    let names = roster::load_regions(store)
        .await
        .context("region names")?
        .into_iter()
        .map(|r| (r.code, r.name))
        .collect();
    Ok(Some(summarise(
        inputs.incident,
        inputs.callouts,
        &inputs.evacuations,
        &inputs.knocks,
        &names,
    )))
}
