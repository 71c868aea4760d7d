//! Ingest: one CAP message in → stored verbatim and parsed → targeted → one transaction that
//! creates the incident, its call-outs, their first jobs and the ledger entries.
//! Used by `POST /api/v1/warnings`, `jiaoying ingest` and the demo alike.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::app::Core;
use crate::cap::{self, CapError, MsgType, Status};
use crate::plan::{plan, Planned};
use crate::store::{incidents, ledger, now_ms, roster, warnings};
use crate::targeting::threatened;

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub warning_id: i64,
    pub duplicate: bool,
    pub incidents: Vec<IncidentRef>,
    /// Why nothing was dispatched, when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct IncidentRef {
    pub id: i64,
    pub code: String,
    pub callouts: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Invalid(CapError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub async fn ingest(core: &Core, raw: &[u8], source: &str) -> Result<Outcome, IngestError> {
    let started = std::time::Instant::now();
    let now = now_ms();
    let alert = match cap::parse(raw) {
        Ok(a) => a,
        Err(e) => {
            warnings::reject(
                &core.store.pool,
                core.store.backend,
                raw,
                source,
                &e.to_string(),
                now,
            )
            .await?;
            tracing::warn!(source, error = %e, "CAP message refused");
            return Err(IngestError::Invalid(e));
        }
    };
    let class = alert.classify();
    let info = alert.preferred_info();

    // Decide what to dispatch before taking the write transaction (SQLite has one writer).
    let dispatchable = matches!(alert.status, Status::Actual | Status::Exercise | Status::Test)
        && matches!(alert.msg_type, MsgType::Alert | MsgType::Update);
    // An active response level (respond.rs) raises the colour in its regions.
    let (colour, raised) = crate::respond::raise(core, info, class.colour, &class.hazard, now).await?;
    let policy = colour
        .and_then(|c| core.settings.policy_for(c, &class.hazard))
        .cloned();
    let mut note = None;
    let mut planned: Vec<Planned> = Vec::new();
    match (dispatchable, &policy, info) {
        (false, _, _) => {
            note = Some(format!(
                "status {} / msgType {}: stored, not dispatched",
                alert.status.as_str(),
                alert.msg_type.as_str()
            ))
        }
        (true, None, _) => {
            note = Some(format!(
                "no policy for colour {:?} and hazard {}",
                class.colour, class.hazard
            ))
        }
        (true, Some(_), None) => note = Some("no info block: nothing to target".into()),
        (true, Some(p), Some(info)) => {
            let regions = roster::load_regions(&core.store.pool).await?;
            let contacts = roster::load_contacts(&core.store.pool).await?;
            let names: BTreeMap<_, _> = regions.iter().map(|r| (r.code.clone(), r.name.clone())).collect();
            planned = plan(&threatened(info, &regions), &contacts, p, &names);
            if planned.is_empty() {
                note = Some("no region of the roster is in the warning's area".into());
            }
        }
    }

    let planned_ms = started.elapsed().as_millis() as u64;
    let mut tx = core.store.begin().await?;
    if let Some(id) = warnings::find(&mut tx, &alert.sender, &alert.identifier, &alert.sent).await? {
        tx.rollback().await.ok();
        let incidents = incidents::incidents_of_warning(&core.store.pool, id)
            .await?
            .into_iter()
            .map(|i| IncidentRef {
                id: i.id,
                code: i.code,
                callouts: 0,
            })
            .collect();
        return Ok(Outcome {
            warning_id: id,
            duplicate: true,
            incidents,
            note: Some("already received".into()),
        });
    }
    let warning_id = warnings::insert(&mut tx, &alert, &class, raw, source, now).await?;
    let mut records = vec![ledger::Record::new(
        "warning.received",
        format!("warning:{warning_id}"),
        serde_json::json!({"sender": alert.sender, "identifier": alert.identifier, "sent": alert.sent,
            "msg_type": alert.msg_type.as_str(), "status": alert.status.as_str(), "colour": class.colour,
            "hazard": class.hazard, "source": source, "deviations": alert.deviations}),
    )];
    let mut refs = Vec::new();
    if let (Some(p), Some(info), false) = (&policy, info, planned.is_empty()) {
        let title = info.headline.clone().unwrap_or_else(|| info.event.clone());
        let new = incidents::NewIncident {
            warning_id: Some(warning_id),
            title: &title,
            event: &info.event,
            description: info.description.as_deref().unwrap_or(""),
            instruction: info.instruction.as_deref().unwrap_or(""),
            colour: class.colour.map(|c| c.as_str()),
            hazard: &class.hazard,
            policy: serde_json::to_value(p).map_err(anyhow::Error::from)?,
            drill: matches!(alert.status, Status::Exercise | Status::Test),
            expires_at: alert.expires_at().map(|t| t.timestamp_millis()),
            deadline_ms: p.deadline.as_millis() as i64,
        };
        let (id, code) = incidents::create(&mut tx, core.store.backend, &new, &planned, now).await?;
        if let Some(r) = &raised {
            records.push(crate::respond::raised_record(r, id, class.colour, colour));
        }
        refs.push(IncidentRef {
            id,
            code,
            callouts: planned.len(),
        });
    }
    ledger::append(&mut tx, core.store.backend, now, records).await?;
    match tx.commit().await {
        Ok(()) => {}
        // Two feeds delivering the same warning at once: the unique key decides.
        Err(e) if e.to_string().to_lowercase().contains("unique") => {
            let id = warnings::find(
                &mut *core.store.pool.acquire().await.map_err(anyhow::Error::from)?,
                &alert.sender,
                &alert.identifier,
                &alert.sent,
            )
            .await?
            .unwrap_or(0);
            return Ok(Outcome {
                warning_id: id,
                duplicate: true,
                incidents: vec![],
                note: Some("already received".into()),
            });
        }
        Err(e) => return Err(anyhow::Error::from(e).into()),
    }
    core.wake.notify_waiters();
    tracing::info!(
        warning.id = warning_id,
        callouts = planned.len(),
        planned_ms,
        total_ms = started.elapsed().as_millis() as u64,
        "warning ingested"
    );
    Ok(Outcome {
        warning_id,
        duplicate: false,
        incidents: refs,
        note,
    })
}
