//! What an after-action report is built from, read in one place. The report itself (totals,
//! roll-ups, who was never reached, the timeline) is `record::report`, pure; this file only
//! reads.

use anyhow::{Context, Result};
use sqlx::Row;

use super::{answers, callouts, incidents, roster, Store};
use crate::config::Policy;
use crate::record::report::{summarise, with_timeline, LedgerHead, Report, ResponseSpan, WarningSeen};

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
    let mut r = summarise(incident, callouts, &evacuations, &knocks, &names);
    let warnings = warnings_of(store, incident_id).await?;
    let responses = responses_of(store, incident_id).await?;
    with_timeline(&mut r, &warnings, &responses);
    // The head last: every row shown was written with its ledger entry in one transaction, so
    // each of them is covered by this head (a newer head can only cover more).
    r.ledger = ledger_head(store).await?;
    Ok(Some(r))
}

/// The ledger's head (seq + hash). `None` only for a database without the head row.
pub async fn ledger_head(store: &Store) -> Result<Option<LedgerHead>> {
    let row: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM ledger_head WHERE id = 1")
        .fetch_optional(&mut *store.conn().await?)
        .await
        .context("reading the ledger head")?;
    Ok(row.map(|(seq, hash)| LedgerHead { seq, hash }))
}

async fn warnings_of(store: &Store, incident_id: i64) -> Result<Vec<WarningSeen>> {
    let rows = sqlx::query(
        "SELECT id, received_at, msg_type, event FROM warnings WHERE incident_id = $1 ORDER BY received_at, id",
    )
    .bind(incident_id)
    .fetch_all(&mut *store.conn().await?)
    .await
    .context("the incident's warnings")?;
    rows.iter()
        .map(|r| {
            Ok(WarningSeen {
                id: r.try_get(0)?,
                received_at: r.try_get(1)?,
                msg_type: r.try_get(2)?,
                event: r.try_get(3)?,
            })
        })
        .collect()
}

async fn responses_of(store: &Store, incident_id: i64) -> Result<Vec<ResponseSpan>> {
    Ok(super::responses::of_incident(store, incident_id)
        .await?
        .into_iter()
        .map(|s| ResponseSpan {
            id: s.id,
            hazard: s.hazard,
            level: s.level.zh().to_string(),
            regions: s.regions.iter().map(|c| c.to_string()).collect(),
            actor: s.actor,
            started_at: s.started_at,
            ended_at: s.ended_at,
            ended_by: s.ended_by,
        })
        .collect())
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
    let mut r = summarise(
        inputs.incident,
        inputs.callouts,
        &inputs.evacuations,
        &inputs.knocks,
        &names,
    );
    // The timeline's warnings and response levels come from their tables, which `ledger
    // verify` holds to the ledger (responses) or to the raw digest (warnings).
    let warnings = warnings_of(store, incident_id).await?;
    let responses = responses_of(store, incident_id).await?;
    with_timeline(&mut r, &warnings, &responses);
    r.ledger = ledger_head(store).await?;
    Ok(Some(r))
}
