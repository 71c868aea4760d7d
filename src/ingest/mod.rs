//! Ingest: one CAP message in → stored verbatim and parsed → targeted → one transaction that
//! creates or changes the incident, its call-outs, their jobs and the ledger entries.
//! Used by `POST /api/v1/warnings`, `jiaoying ingest` and the demo alike.
//!
//! `msgType` and `references` (what each does to the call-outs is `revise.rs`):
//! - An **Alert** opens an incident when the policy and the roster give anyone to call.
//! - An **Update** joins the incident of the warnings it references (the first reference that
//!   names a received warning with an incident). If its references name received warnings
//!   that opened no incident (nobody was in their area), or it has none, it is treated as an
//!   Alert. A **Cancel** stands the referenced incident down (`deliver::standdown`: 解除 to
//!   everyone called, pending call-outs and escalations cancelled).
//! - **References not received yet**: when no reference names a received warning, the message
//!   is stored, its references kept in `warning_refs`, and nothing is dispatched. When the
//!   referenced warning arrives it is applied first, then the waiting messages in the order
//!   they were sent, in the same transaction: an Update is applied as if it had come after it;
//!   a Cancel closes the new incident before anything is sent, so the original calls nobody.
//! - **Drills never mix with real warnings**: an Update whose status (Actual, or
//!   Exercise/Test) differs from the incident's opens an incident of its own, as an Alert
//!   would; a Cancel across that line cancels nothing. Both are noted in the ledger.
//! - An Update or Cancel for a closed incident is linked to it and calls nobody.
//! - `status` System/Draft and `msgType` Ack/Error are stored, never dispatched.

pub mod feed;
pub mod revise;
pub mod validate;

use std::collections::HashMap;

use anyhow::Context;
use serde::Serialize;

use crate::cap::{self, Alert, CapError, Classification, MsgType, Status};
use crate::config::Policy;
use crate::core::Core;
use crate::deliver::standdown;
use crate::domain::{Colour, IncidentState};
use crate::ingest::revise::{change_label, revise, Existing, Step};
use crate::store::callouts::{self, Added};
use crate::store::incidents::{self, Incident, NewIncident};
use crate::store::ledger::Record;
use crate::store::{roster, warnings, Tx};
use crate::target::plan::{decide, Planned};

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
    /// Call-outs this message made (new people, and people called again after an upgrade).
    pub callouts: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Invalid(CapError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// One message ready to apply: classified and planned against the roster before the write
/// transaction (SQLite has one writer).
struct Prepared {
    warning_id: i64,
    alert: Alert,
    class: Classification,
    policy: Option<Policy>,
    /// The active response level that raised the policy applied (respond.rs), if any.
    raised: Option<(crate::respond::Response, Option<Colour>)>,
    planned: Vec<Planned>,
    dispatchable: bool,
    /// Open an incident even with nobody to call (a Cancel for it came first).
    open_empty: bool,
    /// Why nothing will be dispatched, when that is known before applying.
    note: Option<String>,
}

fn is_drill(s: Status) -> bool {
    matches!(s, Status::Exercise | Status::Test)
}

type Roster = crate::target::plan::Snapshot;

async fn prepare(
    core: &Core,
    alert: Alert,
    roster_cache: &mut Option<Roster>,
    now: i64,
) -> anyhow::Result<Prepared> {
    let class = alert.classify();
    let dispatchable = matches!(alert.status, Status::Actual | Status::Exercise | Status::Test)
        && matches!(alert.msg_type, MsgType::Alert | MsgType::Update | MsgType::Cancel);
    let info = alert.preferred_info();
    // An active response level raises the colour in its regions.
    let (colour, raised) = crate::respond::raise(core, info, class.colour, &class.hazard, now).await?;
    let mut policy = None;
    let mut planned = Vec::new();
    let note = match (dispatchable, info) {
        (false, _) => Some(format!(
            "status {} / msgType {}: stored, not dispatched",
            alert.status.as_str(),
            alert.msg_type.as_str()
        )),
        _ if alert.msg_type == MsgType::Cancel => None,
        (true, None) => Some("no info block: nothing to target".into()),
        (true, Some(info)) => {
            if roster_cache.is_none() {
                *roster_cache = Some(roster::load_snapshot(&core.store).await?);
            }
            let roster = roster_cache.as_ref().expect("loaded above");
            let raised_class = Classification {
                colour,
                ..class.clone()
            };
            let d = decide(&core.settings, info, &raised_class, None, roster, now);
            policy = d.policy;
            planned = d.calls.into_iter().map(|c| c.planned).collect();
            d.note
        }
    };
    Ok(Prepared {
        warning_id: 0,
        alert,
        class,
        policy,
        raised: raised.map(|r| (r, colour)),
        planned,
        dispatchable,
        open_empty: false,
        note,
    })
}

/// What applying one message did.
#[derive(Default)]
struct Applied {
    incident: Option<(i64, String, usize)>,
    note: Option<String>,
}

impl Applied {
    fn note(note: impl Into<String>) -> Applied {
        Applied {
            incident: None,
            note: Some(note.into()),
        }
    }
}

/// One message of a document, with where it was found.
#[derive(Debug, Serialize)]
pub struct Message {
    pub location: String,
    #[serde(flatten)]
    pub result: MessageResult,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageResult {
    Ingested(Outcome),
    Refused(String),
}

/// A document that may hold many messages (an `<alerts>` list, EDXL-DE, an Atom/RSS feed with
/// embedded alerts) or just one: each message found is ingested on its own. A document that
/// cannot be read, or holds no message, is refused and kept like a bad message.
pub async fn ingest_document(core: &Core, raw: &[u8], source: &str) -> Result<Vec<Message>, IngestError> {
    let refuse = |e: CapError| async move {
        warnings::reject(&core.store, raw, source, &e.to_string(), core.now()).await?;
        tracing::warn!(source, error = %e, "CAP document refused");
        Err(IngestError::Invalid(e))
    };
    let found = match cap::extract(raw) {
        Ok(f) => f,
        Err(e) => return refuse(e).await,
    };
    if found.is_empty() {
        let links = cap::links(raw).map(|l| l.len()).unwrap_or(0);
        return refuse(CapError::new(
            "",
            format!(
                "no CAP message in this document ({links} links to CAP files: a [[feed]] of kind \"index\" follows them)"
            ),
        ))
        .await;
    }
    let mut out = Vec::with_capacity(found.len());
    for f in found {
        // A lone alert is kept verbatim; a message cut out of a wrapper says where it came from.
        let (bytes, src) = if f.location == "alert" {
            (raw, source.to_string())
        } else {
            (f.bytes.as_slice(), format!("{source}#{}", f.location))
        };
        let result = match ingest(core, bytes, &src).await {
            Ok(o) => MessageResult::Ingested(o),
            Err(IngestError::Invalid(e)) => MessageResult::Refused(e.to_string()),
            Err(e) => return Err(e),
        };
        out.push(Message {
            location: f.location,
            result,
        });
    }
    Ok(out)
}

pub async fn ingest(core: &Core, raw: &[u8], source: &str) -> Result<Outcome, IngestError> {
    let started = std::time::Instant::now();
    let now = core.now();
    // Parse: a refusal is kept with its reason.
    let alert = match cap::parse(raw) {
        Ok(a) => a,
        Err(e) => {
            warnings::reject(&core.store, raw, source, &e.to_string(), now).await?;
            tracing::warn!(source, error = %e, "CAP message refused");
            return Err(IngestError::Invalid(e));
        }
    };
    // Prepare: classify and plan, outside any transaction.
    let (msg, waiting) = prepare_with_waiting(core, alert, now).await?;
    let planned_ms = started.elapsed().as_millis() as u64;
    // Write: one transaction.
    let (warning_id, touched, note) = match write(core, raw, source, msg, &waiting, now).await? {
        Written::Duplicate(outcome) => return Ok(outcome),
        Written::New {
            warning_id,
            touched,
            note,
        } => (warning_id, touched, note),
    };
    core.wake.notify_waiters();
    let callouts: usize = touched.iter().map(|t| t.2).sum();
    tracing::info!(
        warning.id = warning_id,
        callouts,
        planned_ms,
        total_ms = started.elapsed().as_millis() as u64,
        "warning ingested"
    );
    Ok(Outcome {
        warning_id,
        duplicate: false,
        incidents: touched
            .into_iter()
            .map(|(id, code, callouts)| IncidentRef { id, code, callouts })
            .collect(),
        note: note.filter(|_| callouts == 0),
    })
}

/// The message planned, and the messages that came before it and reference it (an Update or
/// a Cancel that arrived before its original), planned too. A Cancel that came first means the
/// incident is opened and closed at once, calling nobody.
async fn prepare_with_waiting(
    core: &Core,
    alert: Alert,
    now: i64,
) -> Result<(Prepared, Vec<Prepared>), IngestError> {
    let mut roster_cache = None;
    let mut msg = prepare(core, alert, &mut roster_cache, now).await?;
    let mut waiting = Vec::new();
    if msg.dispatchable {
        let a = &msg.alert;
        for (id, alert) in warnings::waiting_for(&core.store, &a.sender, &a.identifier, &a.sent).await? {
            let mut w = prepare(core, alert, &mut roster_cache, now).await?;
            w.warning_id = id;
            waiting.push(w);
        }
    }
    if waiting.iter().any(|w| {
        w.alert.msg_type == MsgType::Cancel && is_drill(w.alert.status) == is_drill(msg.alert.status)
    }) {
        msg.planned.clear();
        msg.open_empty = true;
    }
    Ok((msg, waiting))
}

/// What writing a message did.
enum Written {
    /// Received before (by its sender, identifier and sent): nothing written.
    Duplicate(Outcome),
    /// Stored and applied: the incidents it touched (id, code, call-outs made).
    New {
        warning_id: i64,
        touched: Vec<(i64, String, usize)>,
        note: Option<String>,
    },
}

/// Stores the warning, applies it and the messages waiting for it, in one transaction.
async fn write(
    core: &Core,
    raw: &[u8],
    source: &str,
    mut msg: Prepared,
    waiting: &[Prepared],
    now: i64,
) -> Result<Written, IngestError> {
    let alert = &msg.alert;
    let mut tx = core.store.begin().await?;
    if let Some(id) = tx
        .find_warning(&alert.sender, &alert.identifier, &alert.sent)
        .await?
    {
        tx.rollback().await?;
        let incidents = incidents::incidents_of_warning(&core.store, id)
            .await?
            .into_iter()
            .map(|i| IncidentRef {
                id: i.id,
                code: i.code,
                callouts: 0,
            })
            .collect();
        return Ok(Written::Duplicate(Outcome {
            warning_id: id,
            duplicate: true,
            incidents,
            note: Some("already received".into()),
        }));
    }
    let warning_id = tx.insert_warning(alert, &msg.class, raw, source, now).await?;
    tx.record(
        "warning.received",
        format!("warning:{warning_id}"),
        serde_json::json!({"sender": alert.sender, "identifier": alert.identifier, "sent": alert.sent,
        "msg_type": alert.msg_type.as_str(), "status": alert.status.as_str(), "colour": msg.class.colour,
        "hazard": msg.class.hazard, "source": source, "deviations": alert.deviations,
        "references": alert.references}),
        now,
    )
    .await?;
    msg.warning_id = warning_id;
    let first = apply(&mut tx, &msg, now).await?;
    let note = first.note.clone();
    let mut touched: Vec<(i64, String, usize)> = first.incident.into_iter().collect();
    for w in waiting {
        tx.resolve_refs(w.warning_id, now).await?;
        let applied = apply(&mut tx, w, now).await?;
        tracing::info!(warning.id = w.warning_id, waited_for = warning_id, note = ?applied.note, "waiting warning applied");
        if let Some((id, code, n)) = applied.incident {
            match touched.iter_mut().find(|t| t.0 == id) {
                Some(t) => t.2 += n,
                None => touched.push((id, code, n)),
            }
        }
    }
    match tx.commit().await {
        Ok(()) => Ok(Written::New {
            warning_id,
            touched,
            note,
        }),
        // Two feeds delivering the same warning at once: the unique key decides.
        Err(e) if format!("{e:#}").to_lowercase().contains("unique") => {
            let alert = &msg.alert;
            let id = warnings::find(&core.store, &alert.sender, &alert.identifier, &alert.sent)
                .await?
                .unwrap_or(0);
            Ok(Written::Duplicate(Outcome {
                warning_id: id,
                duplicate: true,
                incidents: vec![],
                note: Some("already received".into()),
            }))
        }
        Err(e) => Err(e.into()),
    }
}

/// Applies one stored message inside the transaction (see the module comment for the rules).
async fn apply(tx: &mut Tx, msg: &Prepared, now: i64) -> anyhow::Result<Applied> {
    if !msg.dispatchable {
        return Ok(Applied {
            incident: None,
            note: msg.note.clone(),
        });
    }
    let refs = &msg.alert.references;
    if msg.alert.msg_type == MsgType::Alert || refs.is_empty() {
        return match msg.alert.msg_type {
            MsgType::Cancel => Ok(Applied::note("Cancel without references: nothing to cancel")),
            _ => open(tx, msg, now).await,
        };
    }
    let mut found = false;
    let mut target = None;
    for r in refs {
        if let Some((_, incident)) = tx.find_ref(r).await? {
            found = true;
            target = target.or(incident);
        }
    }
    let Some(incident_id) = target else {
        if !found {
            tx.keep_refs(msg.warning_id, refs, now).await?;
            return Ok(Applied::note(
                "waiting for the referenced warning: applied when it arrives",
            ));
        }
        return match msg.alert.msg_type {
            MsgType::Cancel => Ok(Applied::note(
                "the referenced warning opened no incident: nothing to cancel",
            )),
            _ => open(tx, msg, now).await,
        };
    };
    let inc = tx
        .incident(incident_id)
        .await?
        .context("a warning links to a missing incident")?;
    let subject = format!("warning:{}", msg.warning_id);
    if inc.drill != is_drill(msg.alert.status) {
        tx.record(
            "warning.not_mixed",
            subject,
            serde_json::json!({"incident": inc.id, "incident_drill": inc.drill, "status": msg.alert.status.as_str()}),
            now,
        )
        .await?;
        let why = "演练与实际预警不混合 / drill and actual warnings are never mixed";
        return match msg.alert.msg_type {
            MsgType::Cancel => Ok(Applied::note(format!(
                "{why}: incident {} not cancelled",
                inc.code
            ))),
            _ => open(tx, msg, now).await,
        };
    }
    tx.link_warning(msg.warning_id, inc.id).await?;
    if inc.state != IncidentState::Active {
        tx.record(
            "warning.joined_closed",
            subject,
            serde_json::json!({"incident": inc.id}),
            now,
        )
        .await?;
        return Ok(Applied {
            incident: Some((inc.id, inc.code.clone(), 0)),
            note: Some(format!("incident {} is closed: nobody called", inc.code)),
        });
    }
    if msg.alert.msg_type == MsgType::Cancel {
        standdown::within(tx, inc.id, &subject, now).await?;
        return Ok(Applied {
            incident: Some((inc.id, inc.code.clone(), 0)),
            note: Some(format!("incident {} cancelled (解除)", inc.code)),
        });
    }
    update(tx, msg, inc, now).await
}

/// The incident's fields as this message states them.
fn new_incident<'a>(msg: &'a Prepared, policy: &'a Policy, title: &'a str) -> NewIncident<'a> {
    let info = msg.alert.preferred_info();
    NewIncident {
        warning_id: Some(msg.warning_id),
        title,
        event: info.map_or("", |i| i.event.as_str()),
        description: info.and_then(|i| i.description.as_deref()).unwrap_or(""),
        instruction: info.and_then(|i| i.instruction.as_deref()).unwrap_or(""),
        colour: msg.class.colour,
        hazard: &msg.class.hazard,
        policy,
        drill: is_drill(msg.alert.status),
        expires_at: msg.alert.expires_at().map(|t| t.timestamp_millis()),
        deadline_ms: policy.deadline.as_millis() as i64,
    }
}

fn title_of(msg: &Prepared) -> String {
    msg.alert
        .preferred_info()
        .map(|i| i.headline.clone().unwrap_or_else(|| i.event.clone()))
        .unwrap_or_default()
}

/// A new incident for this message, when anyone is to be called.
async fn open(tx: &mut Tx, msg: &Prepared, now: i64) -> anyhow::Result<Applied> {
    let (Some(policy), false) = (&msg.policy, msg.planned.is_empty() && !msg.open_empty) else {
        return Ok(Applied {
            incident: None,
            note: msg.note.clone(),
        });
    };
    let title = title_of(msg);
    let new = new_incident(msg, policy, &title);
    let (id, code) = tx.create_incident(&new, &msg.planned, now).await?;
    tx.link_warning(msg.warning_id, id).await?;
    if let Some((r, to)) = &msg.raised {
        let rec = crate::respond::raised_record(r, id, msg.class.colour, *to);
        tx.append(vec![rec], now).await?;
    }
    Ok(Applied {
        incident: Some((id, code, msg.planned.len())),
        note: None,
    })
}

/// An Update joining an active incident of its own kind (drill or not).
async fn update(tx: &mut Tx, msg: &Prepared, inc: Incident, now: i64) -> anyhow::Result<Applied> {
    let old_colour = inc.colour;
    let step = Step::between(old_colour, msg.class.colour);
    let callouts = tx.callouts_of_incident(inc.id).await?;
    let existing: Vec<Existing> = callouts
        .iter()
        .map(|c| Existing {
            callout_id: c.id,
            contact_id: c.contact_id,
            state: c.state,
            sent: c.sent_at.is_some(),
        })
        .collect();
    let rev = revise(&existing, msg.planned.clone(), step);
    // A colour without a policy of its own (or no colour) keeps the incident's policy.
    let policy = msg.policy.clone().unwrap_or_else(|| inc.policy.clone());
    let title = match title_of(msg) {
        t if t.is_empty() => inc.title.clone(),
        t => t,
    };
    let mut fields = new_incident(msg, &policy, &title);
    if fields.event.is_empty() {
        fields.event = &inc.event;
    }
    tx.revise_incident(inc.id, &fields).await?;
    let label = change_label(
        &inc.event,
        old_colour,
        fields.event,
        msg.class.colour.or(old_colour),
    );
    let deadline = now + fields.deadline_ms;
    let mut records = Vec::new();
    let ids = tx
        .add_callouts(inc.id, &rev.new, &Added::default(), deadline, now)
        .await?;
    records.extend(callouts::planned_records(inc.id, &rev.new, &ids, deadline));
    let mut made = ids.len();
    if !rev.upgrade.is_empty() {
        let by_id: HashMap<i64, _> = callouts.iter().map(|c| (c.id, c)).collect();
        let again: Vec<Planned> = rev
            .upgrade
            .iter()
            .map(|id| {
                let c = by_id[id];
                Planned {
                    contact_id: c.contact_id,
                    contact_key: c.contact_key.clone(),
                    region: c.region_code.clone(),
                    role: c.role.clone(),
                    place: c.place.clone(),
                    reason: format!("升级 {label}；{}", c.reason),
                }
            })
            .collect();
        // Their answer to the old colour stays in the record but no longer counts.
        tx.cancel_unanswered(&rev.upgrade, now).await?;
        let added = Added {
            parents: &rev.upgrade,
            upgrade: Some(&label),
        };
        let ids = tx.add_callouts(inc.id, &again, &added, deadline, now).await?;
        records.extend(callouts::planned_records(inc.id, &again, &ids, deadline));
        made += ids.len();
    }
    tx.notify(
        &rev.inform,
        crate::store::jobs::Notice::Downgrade {
            change: label.clone(),
        },
        now,
    )
    .await?;
    tx.link_warning(msg.warning_id, inc.id).await?;
    records.insert(
        0,
        Record::new(
            "incident.updated",
            format!("incident:{}", inc.id),
            serde_json::json!({"warning": msg.warning_id, "step": step.as_str(), "from": inc.colour,
                "to": msg.class.colour, "change": label, "new": rev.new.len(), "upgraded": rev.upgrade.len(),
                "informed": rev.inform.len(), "expires_at": fields.expires_at, "policy": policy.name}),
        ),
    );
    tx.append(records, now).await?;
    Ok(Applied {
        incident: Some((inc.id, inc.code, made)),
        note: None,
    })
}
