//! What one stored message does to the incidents, inside the ingest transaction: an Alert
//! opens an incident, an Update joins (and revises) the one it references, a Cancel stands it
//! down; the rules are in the module comment of `ingest`, the pure decisions in `revise`.
//! This file must not parse or plan (that is `ingest::prepare`) nor commit (the caller does).

use std::collections::HashMap;

use anyhow::Context;

use super::slices;
use super::{is_drill, Prepared};
use crate::cap::MsgType;
use crate::config::Policy;
use crate::deliver::standdown;
use crate::domain::IncidentState;
use crate::ingest::revise::{change_label, revise, Existing, Step};
use crate::store::callouts::{self, Added};
use crate::store::incidents::{Incident, NewIncident};
use crate::store::jobs::{self, NewJob};
use crate::store::ledger::Record;
use crate::store::planning::{Planning, Started};
use crate::store::Tx;
use crate::target::plan::Planned;

/// What applying one message did.
#[derive(Default)]
pub(super) struct Applied {
    pub(super) incident: Option<(i64, String, usize)>,
    pub(super) note: Option<String>,
    /// Only the first slice of the plan was written (`slices`).
    pub(super) sliced: Option<Started>,
}

impl Applied {
    fn note(note: impl Into<String>) -> Applied {
        Applied {
            incident: None,
            note: Some(note.into()),
            sliced: None,
        }
    }
}

/// Applies one stored message inside the transaction (see the module comment for the rules).
pub(super) async fn apply(tx: &mut Tx, msg: &Prepared, now: i64) -> anyhow::Result<Applied> {
    if !msg.dispatchable {
        return Ok(Applied {
            incident: None,
            note: msg.note.clone(),
            sliced: None,
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
    // References this message may act on: its sender's own, by the way they came in
    // (`may_revise`). The rest are noted and never kept waiting.
    let (own, foreign): (Vec<_>, Vec<_>) = refs.iter().partition(|r| r.sender == msg.alert.sender);
    let mut refused: Vec<String> = foreign
        .iter()
        .map(|r| format!("{},{},{}", r.sender, r.identifier, r.sent))
        .collect();
    for r in &own {
        if let Some((_, incident, ref_source)) = tx.find_ref(r).await? {
            if !super::may_revise(&msg.alert.sender, &msg.source, &r.sender, &ref_source) {
                refused.push(format!("{},{},{}", r.sender, r.identifier, r.sent));
                continue;
            }
            found = true;
            target = target.or(incident);
        }
    }
    if !refused.is_empty() {
        tx.record(
            "warning.ref_refused",
            format!("warning:{}", msg.warning_id),
            serde_json::json!({"sender": msg.alert.sender, "source": msg.source, "references": refused}),
            now,
        )
        .await?;
    }
    if !found && own.len() == refused.len() - foreign.len() {
        // Every reference names another sender's warning (or one this source may not speak
        // for): nothing to revise, and nothing kept to disarm a warning still to come.
        return Ok(Applied::note(format!(
            "{} may only revise its own warnings: references {} refused (只能更正或撤销本发送方的预警)",
            msg.alert.sender,
            refused.join(" ")
        )));
    }
    let Some(incident_id) = target else {
        if !found {
            let own: Vec<_> = own.into_iter().cloned().collect();
            tx.keep_refs(msg.warning_id, &own, now).await?;
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
            sliced: None,
        });
    }
    if msg.alert.msg_type == MsgType::Cancel {
        standdown::within(tx, inc.id, &subject, now).await?;
        return Ok(Applied {
            incident: Some((inc.id, inc.code.clone(), 0)),
            note: Some(format!("incident {} cancelled (解除)", inc.code)),
            sliced: None,
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
            sliced: None,
        });
    };
    let title = title_of(msg);
    let new = new_incident(msg, policy, &title);
    let total = msg.planned.len();
    let mut sliced = None;
    let (id, code) = if msg.sliced && (total > msg.plan_first || msg.partial) {
        // A large plan: the incident and its first slice now, the rest after the commit
        // (decided then, when only the first were decided so far).
        let first = &msg.planned[..msg.plan_first.min(total)];
        let (id, code) = tx.create_incident_sliced(&new, first, total, now).await?;
        let deadline_at = now + new.deadline_ms;
        tx.start_planning(&Planning {
            incident_id: id,
            warning_id: msg.warning_id,
            colour: msg.plan_colour,
            planned_at: now,
            deadline_at,
            total: total as i64,
            done: first.len() as i64,
            finished_at: None,
        })
        .await?;
        // A plan that may take seconds: claimed for longer than any slice takes, renewed
        // while it runs (`slices::write_rest`); a crash lets the claim run out.
        let until = now + msg.lease_ms;
        let job =
            jobs::insert_claimed(&mut *tx, NewJob::plan(id, now), &slices::planner(id), until, now).await?;
        sliced = Some(Started {
            incident: id,
            job,
            deadline_at,
            done: first.len() as i64,
        });
        (id, code)
    } else {
        tx.create_incident(&new, &msg.planned, now).await?
    };
    tx.link_warning(msg.warning_id, id).await?;
    if let Some((r, to)) = &msg.raised {
        let rec = crate::respond::raised_record(r, id, msg.class.colour, *to);
        tx.append(vec![rec], now).await?;
    }
    Ok(Applied {
        incident: Some((id, code, total)),
        note: None,
        sliced,
    })
}

/// An Update joining an active incident of its own kind (drill or not).
async fn update(tx: &mut Tx, msg: &Prepared, inc: Incident, now: i64) -> anyhow::Result<Applied> {
    let old_colour = inc.colour;
    let step = Step::between(old_colour, msg.class.colour);
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
    // Read once the incident is locked (by the update above): a chunk of deadlines in this
    // incident that called someone meanwhile has committed, and they are not called again.
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
            task: None,
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
        sliced: None,
    })
}
