//! Ingest: one CAP message in → stored verbatim and parsed → targeted → one transaction that
//! creates the incident, its call-outs, their first jobs and the ledger entries.
//! Used by `POST /api/v1/warnings`, `jiaoying ingest` and the demo alike.

use serde::Serialize;

use crate::app::Core;
use crate::cap::{self, CapError, MsgType, Status};
use crate::plan::{decide, Planned};
use crate::store::{incidents, ledger, now_ms, warnings};

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
    let mut policy = None;
    let mut planned: Vec<Planned> = Vec::new();
    let note = match (dispatchable, info) {
        (false, _) => Some(format!(
            "status {} / msgType {}: stored, not dispatched",
            alert.status.as_str(),
            alert.msg_type.as_str()
        )),
        (true, None) => Some("no info block: nothing to target".into()),
        (true, Some(info)) => {
            let roster = crate::preview::load_snapshot(&core.store.pool).await?;
            let d = decide(&core.settings, info, &class, None, &roster, now);
            policy = d.policy;
            planned = d.calls.into_iter().map(|c| c.planned).collect();
            d.note
        }
    };

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
    let records = vec![ledger::Record::new(
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
