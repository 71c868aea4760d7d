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
//! - **Only the sender revises its own warnings** ([`may_revise`]): an Update or Cancel acts
//!   on a referenced warning only when its `sender` is that warning's sender *and* it came by
//!   the same way in (the same `feed:NAME` or the same API token), or from the operator on
//!   the machine (`jiaoying ingest FILE`, the demo; a warning the operator brought in is
//!   revisable by its sender by any way in). References to another sender's warning
//!   are noted in the ledger (`warning.ref_refused`) and never kept waiting, so a Cancel sent
//!   first by someone else cannot disarm a warning that has not come yet. A Cancel or Update
//!   of the *same* sender and source that arrives first is kept and applied on arrival (feeds
//!   reorder; refusing it would leave a cancelled warning calling people).

mod apply;
pub mod feed;
pub mod import;
pub mod revise;
pub mod slices;
pub mod validate;

use serde::Serialize;

use crate::cap::{self, Alert, CapError, Classification, MsgType, Status};
use crate::config::Policy;
use crate::core::Core;
use crate::domain::Colour;
use crate::store::planning::{PlanRest, Started};
use crate::store::{incidents, warnings};
use crate::target::plan::{decide, decide_up_to, Planned};

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
    /// How it came in (`feed:NAME`, `http:TOKEN`, `file:…`): who may revise what it says.
    source: String,
    /// The colour planned at (raised by a response level, or the warning's own).
    plan_colour: Option<Colour>,
    /// Write the plan in slices (`slices`): only the message a POST brings, with no message
    /// waiting for it, opening an incident.
    sliced: bool,
    /// The claim of the job that writes the slices after the first (`[dispatch] lease`).
    lease_ms: i64,
    /// Call-outs written with the incident when the plan is sliced.
    plan_first: usize,
    /// Only the first `plan_first` people were decided (`decide_up_to`): more may follow,
    /// decided after the first slice is committed (`Later`).
    partial: bool,
    /// The roster the plan was decided on (the rest is decided on the same one).
    roster: Option<Roster>,
}

/// Who a source speaks as: a message cut out of a wrapper (`…#location`) speaks as the
/// wrapper's source, and every local file or the demo as the operator.
fn speaker(source: &str) -> &str {
    let s = source.split('#').next().unwrap_or(source);
    if s.starts_with("file:") || s == "demo" {
        "local"
    } else {
        s
    }
}

/// Whether a message (its sender and source) may revise or cancel a warning it references
/// (that warning's sender and source). See the module comment.
/// A warning the operator brought in by hand (a file, the demo) may be revised by its sender
/// by any way in: the operator stood in for the sender's own feed, which may still follow up.
pub(crate) fn may_revise(sender: &str, source: &str, ref_sender: &str, ref_source: &str) -> bool {
    let (by, of) = (speaker(source), speaker(ref_source));
    sender == ref_sender && (by == "local" || of == "local" || by == of)
}

#[cfg(test)]
mod sender_tests {
    use super::may_revise;

    #[test]
    fn only_the_sender_by_its_own_way_in_revises() {
        let cma = "cma@weather.gov.cn";
        assert!(may_revise(cma, "feed:cma", cma, "feed:cma"));
        assert!(may_revise(cma, "feed:cma#alerts/alert[2]", cma, "feed:cma"));
        assert!(
            !may_revise("evil@x", "feed:cma", cma, "feed:cma"),
            "another sender"
        );
        assert!(
            !may_revise(cma, "http:other-token", cma, "feed:cma"),
            "another way in"
        );
        assert!(
            may_revise(cma, "file:/tmp/cancel.xml", cma, "feed:cma"),
            "the operator"
        );
        assert!(
            may_revise(cma, "feed:cma", cma, "file:/tmp/a.xml"),
            "after the operator"
        );
        assert!(
            !may_revise("evil@x", "file:/tmp/c.xml", cma, "feed:cma"),
            "never another sender"
        );
    }
}

/// Whether a message calls anyone at all (its status and type; SPEC §3).
fn is_dispatchable(alert: &Alert) -> bool {
    matches!(alert.status, Status::Actual | Status::Exercise | Status::Test)
        && matches!(alert.msg_type, MsgType::Alert | MsgType::Update | MsgType::Cancel)
}

fn is_drill(s: Status) -> bool {
    matches!(s, Status::Exercise | Status::Test)
}

pub(crate) type Roster = std::sync::Arc<crate::target::plan::Snapshot>;

async fn prepare(
    core: &Core,
    alert: Alert,
    roster_cache: &mut Option<Roster>,
    now: i64,
    first: Option<usize>,
) -> anyhow::Result<Prepared> {
    let class = alert.classify();
    let dispatchable = is_dispatchable(&alert);
    let info = alert.preferred_info();
    // An active response level raises the colour in its regions.
    let (colour, raised) = crate::respond::raise(core, info, class.colour, &class.hazard, now).await?;
    let mut policy = None;
    let mut planned = Vec::new();
    let mut partial = false;
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
                *roster_cache = Some(core.roster().await?);
            }
            let roster = roster_cache.as_ref().expect("loaded above");
            let raised_class = Classification {
                colour,
                ..class.clone()
            };
            // A new warning's first people alone: they are called while the rest is decided.
            let d = match first {
                Some(limit) => decide_up_to(&core.settings, info, &raised_class, None, roster, now, limit),
                None => decide(&core.settings, info, &raised_class, None, roster, now),
            };
            partial = !d.complete;
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
        source: String::new(),
        plan_colour: colour,
        sliced: false,
        lease_ms: core.settings.dispatch.lease.as_millis() as i64,
        plan_first: slices::first(core),
        partial,
        roster: roster_cache.clone(),
    })
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
    let (msg, waiting) = prepare_with_waiting(core, alert, source, now).await?;
    let planned_ms = started.elapsed().as_millis() as u64;
    let later = Later::of(&msg, now);
    // Write: one transaction, and for a large plan further ones (`slices`).
    let (warning_id, mut touched, note, rest) = match write(core, raw, source, msg, &waiting, now).await? {
        Written::Duplicate(outcome) => return Ok(outcome),
        Written::New {
            warning_id,
            touched,
            note,
            rest,
        } => (warning_id, touched, note, rest),
    };
    core.wake.notify_waiters();
    let first_ms = started.elapsed().as_millis() as u64;
    if let Some((s, rest)) = rest {
        // The first people's messages are on their way: now the whole plan, and its writing
        // by the daemon's planner task, so that the POST does not wait for tens of
        // thousands of rows (and SQLite's one writer is shared with the senders meanwhile).
        let (total, planned) = match later {
            Some(l) => slices::decide_rest(core, l.alert, l.class, l.roster, l.now, l.first).await?,
            None => {
                let n = s.done as usize + rest.len();
                (n, slices::handed(core, rest))
            }
        };
        if let Some(t) = touched.iter_mut().find(|t| t.0 == s.incident) {
            t.2 = t.2.max(total);
        }
        let rest = PlanRest { started: s, planned };
        if let Err(rest) = core.detach(rest) {
            slices::write_rest(core, &slices::planner(s.incident), rest.started, rest.planned).await?;
        }
    }
    let callouts: usize = touched.iter().map(|t| t.2).sum();
    tracing::info!(
        warning.id = warning_id,
        callouts,
        planned_ms,
        first_ms,
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
    source: &str,
    now: i64,
) -> Result<(Prepared, Vec<Prepared>), IngestError> {
    let mut roster_cache = None;
    let dispatchable = is_dispatchable(&alert);
    let kept = match dispatchable {
        true => warnings::waiting_for(&core.store, &alert.sender, &alert.identifier, &alert.sent).await?,
        false => Vec::new(),
    };
    // A new Alert with nothing waiting for it is written in slices, its first people decided
    // alone (issue 11 §2); anything else is decided whole.
    let sliced = kept.is_empty() && alert.msg_type == MsgType::Alert;
    let first = sliced.then(|| slices::first(core));
    let mut msg = prepare(core, alert, &mut roster_cache, now, first).await?;
    msg.source = source.to_string();
    msg.sliced = true;
    let mut waiting = Vec::new();
    for (id, alert, w_source) in kept {
        let a = &msg.alert;
        // Kept references are only ever the sender's own, but rows from before that rule
        // (or another way in) must not disarm this warning either.
        if !may_revise(&alert.sender, &w_source, &a.sender, source) {
            tracing::warn!(warning.id = id, sender = %alert.sender, source = %w_source, "waiting message may not revise this warning: left unapplied");
            continue;
        }
        let mut w = prepare(core, alert, &mut roster_cache, now, None).await?;
        w.warning_id = id;
        w.source = w_source;
        waiting.push(w);
    }
    if waiting.iter().any(|w| {
        w.alert.msg_type == MsgType::Cancel && is_drill(w.alert.status) == is_drill(msg.alert.status)
    }) {
        msg.planned.clear();
        msg.partial = false;
        msg.open_empty = true;
    }
    if !waiting.is_empty() {
        msg.sliced = false;
    }
    Ok((msg, waiting))
}

/// What deciding the rest of a plan needs once its first slice is committed: the same
/// warning, colour, roster and instant as the first people were decided with.
struct Later {
    alert: Alert,
    class: Classification,
    roster: Roster,
    now: i64,
    /// Who the first slice called (not handed over again).
    first: std::collections::HashSet<i64>,
}

impl Later {
    fn of(msg: &Prepared, now: i64) -> Option<Later> {
        let roster = msg.roster.clone().filter(|_| msg.partial)?;
        Some(Later {
            alert: msg.alert.clone(),
            class: Classification {
                colour: msg.plan_colour,
                ..msg.class.clone()
            },
            roster,
            now,
            first: msg
                .planned
                .iter()
                .take(msg.plan_first)
                .map(|p| p.contact_id)
                .collect(),
        })
    }
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
        /// A plan written in slices: the ones after the first, or none yet when only the
        /// first were decided (`Prepared::partial`).
        rest: Option<(Started, Vec<Planned>)>,
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
        "references": alert.references, "raw_sha256": crate::record::fold::digest(raw)}),
        now,
    )
    .await?;
    msg.warning_id = warning_id;
    let first = apply::apply(&mut tx, &msg, now).await?;
    let note = first.note.clone();
    let rest = first.sliced.map(|s| (s, msg.planned.split_off(s.done as usize)));
    let mut touched: Vec<(i64, String, usize)> = first.incident.into_iter().collect();
    for w in waiting {
        tx.resolve_refs(w.warning_id, now).await?;
        let applied = apply::apply(&mut tx, w, now).await?;
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
            rest,
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
