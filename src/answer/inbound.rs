//! Answers and reports coming in: SMS replies (read with the `reply` grammar), delivery
//! receipts and voice results, the answer page, and operators recording a phone call. Every
//! inbound message is kept, understood or not; each change commits with its ledger entry.
//!
//! Every path records an answer through the store's `Tx::acknowledge` (the rule is
//! `domain::callout::on_answer`; a group's plain replies through `Tx::acknowledge_together`,
//! which writes the same rows for many), and an evacuation count through [`evacuation_in`], which
//! records the answer the count implies in the same unit of work: both or neither.

use crate::answer::reply;
use crate::channel::event::{Event, MessageRef, Outcome, Voice, What};
use crate::core::Core;
pub use crate::domain::callout::Answered;
use crate::domain::{AckMethod, Knock, Phone};
use crate::store::answers::{Ack, Evacuation};
use crate::store::callouts::Callout;
use crate::store::inbound::{InboundKind, NewInbound};
use crate::store::{Backend, Tx};
use std::sync::Arc;

use anyhow::Result;

/// Records an answer to a call-out; a second genuine answer changes nothing.
pub async fn answer(
    core: &Core,
    callout_id: i64,
    method: AckMethod,
    note: Option<&str>,
    actor: Option<&str>,
) -> Result<Answered> {
    let ack = Ack {
        method,
        note,
        actor,
        inbound_id: None,
    };
    let mut tx = core.store.begin().await?;
    let r = tx.acknowledge(callout_id, &ack, core.now()).await?;
    tx.commit().await?;
    Ok(r)
}

/// An evacuation count for the region of a call-out, with the answer it implies, in one unit
/// of work (the answer page).
pub async fn report_evacuation(
    core: &Core,
    callout_id: i64,
    moved: i64,
    threatened: Option<i64>,
    method: AckMethod,
) -> Result<Answered> {
    let mut tx = core.store.begin().await?;
    let Some(c) = tx.callout(callout_id).await? else {
        tx.rollback().await?;
        return Ok(Answered::NoSuchCallout);
    };
    let answered = evacuation_in(&mut tx, &c, moved, threatened, &Ack::by(method), core.now()).await?;
    tx.commit().await?;
    Ok(answered)
}

/// A count is an answer too (SPEC §7): the call-out is acknowledged (once: a second answer
/// changes nothing) and the count recorded for its region, in the caller's unit of work.
async fn evacuation_in(
    tx: &mut Tx,
    c: &Callout,
    moved: i64,
    threatened: Option<i64>,
    ack: &Ack<'_>,
    now: i64,
) -> Result<Answered> {
    let answered = tx.acknowledge(c.id, ack, now).await?;
    let e = Evacuation {
        incident_id: c.incident_id,
        callout_id: Some(c.id),
        reporter: &c.contact_key,
        region_code: &c.region_code,
        moved,
        threatened,
        method: ack.method.as_str(),
    };
    tx.record_evacuation(&e, now).await?;
    Ok(answered)
}

/// A door-knock task's result, in the caller's unit of work: the task is answered, the result
/// kept, and the person at the door acknowledged by the knock when it reached them.
async fn knock_in(tx: &mut Tx, task: &Callout, k: Knock, ack: &Ack<'_>, now: i64) -> Result<Answered> {
    let answered = tx.acknowledge(task.id, ack, now).await?;
    if let Some(door) = task.parent_id {
        tx.record_knock(task.incident_id, task.id, door, k, ack.method.as_str(), now)
            .await?;
        if k.reaches() {
            let by_door = Ack {
                method: AckMethod::Door,
                note: Some(k.zh()),
                actor: Some(&task.contact_key),
                inbound_id: ack.inbound_id,
            };
            tx.acknowledge(door, &by_door, now).await?;
        }
    }
    Ok(answered)
}

/// A door-knock result through the answer page (a link in the task's message).
pub async fn report_knock(core: &Core, task_id: i64, k: Knock) -> Result<Answered> {
    let mut tx = core.store.begin().await?;
    let Some(task) = tx.callout(task_id).await?.filter(|c| c.knock) else {
        tx.rollback().await?;
        return Ok(Answered::NoSuchCallout);
    };
    let answered = knock_in(&mut tx, &task, k, &Ack::by(AckMethod::Link), core.now()).await?;
    tx.commit().await?;
    Ok(answered)
}

/// What became of an inbound SMS (kept in `inbound.outcome`, returned to the gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsResult {
    /// No contact has this number: kept, nothing else changes.
    UnknownNumber,
    /// The person has no call-out in an active incident.
    NoOpenCallout,
    /// Not read as an answer: kept for the operators.
    Unparsed,
    /// Kept; not applied yet (only ever seen inside the unit of work).
    Pending,
    Ack,
    Evacuation,
    /// A door-knock task's result.
    Knock,
    /// The call-out was answered already.
    Duplicate,
}

impl SmsResult {
    pub fn as_str(self) -> &'static str {
        match self {
            SmsResult::UnknownNumber => UNKNOWN_NUMBER,
            SmsResult::NoOpenCallout => "no-open-callout",
            SmsResult::Unparsed => "unparsed",
            SmsResult::Pending => "pending",
            SmsResult::Ack => "ack",
            SmsResult::Evacuation => "evacuation",
            SmsResult::Knock => "knock",
            SmsResult::Duplicate => "duplicate",
        }
    }
}

/// The outcome of a reply from a number no contact has.
pub const UNKNOWN_NUMBER: &str = "unknown-number";
/// The outcome of a report seen before under the same provider id.
pub const REPLAYED: &str = "replayed";

/// Acts on what a gateway reported: the one function every gateway's callbacks (and the
/// reconciliation job) end in. Each event is its own unit of work with its ledger entry; an
/// event whose provider id was seen before is kept as a replay and changes nothing.
pub async fn heard(core: &Core, gateway: &str, events: &[Event]) -> Result<Vec<Outcome>> {
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let mut tx = core.store.begin().await?;
        out.push(one(&mut tx, gateway, e, core.now()).await?);
        tx.commit().await?;
    }
    Ok(out)
}

/// One event, in the caller's unit of work.
pub(super) async fn one(tx: &mut Tx, gateway: &str, e: &Event, now: i64) -> Result<Outcome> {
    let id = (!e.id.is_empty()).then_some(e.id.as_str());
    match &e.what {
        What::Reply { from, text } => sms_reply(tx, gateway, id, from, text, now).await,
        What::Receipt { .. } | What::Voice { .. } => report(tx, gateway, id, &e.what, now).await,
    }
}

/// [`heard`] for callbacks coming in together (a reply flood: a village-by-village 收到 after
/// a typhoon warning): the events of the requests waiting meanwhile are applied in one unit of
/// work, in the order they came, and each request is answered once it has committed (group
/// commit). A commit per reply capped a flood at about 700 replies/s on SQLite (one writer)
/// and 290/s on PostgreSQL (each commit holds the ledger head through its WAL flush); a group
/// shares its reads, its writes, its commit and its ledger head (`together`).
/// A group that fails is applied again event by event, so one bad event fails alone.
/// On PostgreSQL a group's answers lock their call-outs in id order (the store's lock order),
/// and a group holding anything but plain replies is applied one by one (see `together`).
pub async fn heard_together(core: &Arc<Core>, gateway: &str, events: Vec<Event>) -> Result<Vec<Outcome>> {
    // Such a request would fail its group there: it goes alone at once.
    if core.store.backend() == Backend::Postgres && !events.iter().all(super::together::plain) {
        return heard(core, gateway, &events).await;
    }
    let core2 = core.clone();
    let out = core
        .callbacks
        .join((gateway.to_string(), events), move |group| {
            // A task of its own: a client that hangs up must not cancel the others' commit.
            let task = tokio::spawn(async move { apply_group(&core2, group).await });
            async move {
                if let Err(e) = task.await {
                    tracing::error!(error = %e, "a group of callbacks stopped");
                }
            }
        })
        .await;
    match out {
        Some(Ok(outcomes)) => Ok(outcomes),
        Some(Err(e)) => Err(anyhow::anyhow!(e)),
        None => Err(anyhow::anyhow!("the callback's group was not applied")),
    }
}

type Waiting = (
    (String, Vec<Event>),
    tokio::sync::oneshot::Sender<std::result::Result<Vec<Outcome>, String>>,
);

/// The callbacks of a group (each a gateway's events) in one unit of work, in order, their
/// plain replies applied together (`together`). Each event's outcome and ledger entries are
/// those it would have alone.
pub async fn heard_in_one(core: &Core, callbacks: &[(String, Vec<Event>)]) -> Result<Vec<Vec<Outcome>>> {
    let now = core.now();
    let mut tx = core.store.begin().await?;
    let events: Vec<(&str, &Event)> = callbacks
        .iter()
        .flat_map(|(gateway, events)| events.iter().map(move |e| (gateway.as_str(), e)))
        .collect();
    let mut all = super::together::apply(&mut tx, &events, now).await?.into_iter();
    let outs: Vec<Vec<Outcome>> = callbacks
        .iter()
        .map(|(_, events)| all.by_ref().take(events.len()).collect())
        .collect();
    tx.commit().await?;
    Ok(outs)
}

async fn apply_group(core: &Core, group: Vec<Waiting>) {
    let callbacks: Vec<(String, Vec<Event>)> = group.iter().map(|(c, _)| c.clone()).collect();
    match heard_in_one(core, &callbacks).await {
        Ok(outs) => {
            for ((_, reply), o) in group.into_iter().zip(outs) {
                let _ = reply.send(Ok(o));
            }
        }
        Err(e) => {
            if group.len() > 1 {
                tracing::warn!(callbacks = group.len(), error = %format!("{e:#}"),
                    "a group of callbacks failed: applying them one by one");
            }
            for ((gateway, events), reply) in group {
                let one_by_one = heard(core, &gateway, &events).await.map_err(|e| format!("{e:#}"));
                let _ = reply.send(one_by_one);
            }
        }
    }
}

/// A replay: kept (without its id, which the first one holds), nothing else changes.
async fn replayed(tx: &mut Tx, gateway: &str, kind: InboundKind, body: &str, now: i64) -> Result<Outcome> {
    let inbound = NewInbound {
        gateway,
        kind,
        sender: None,
        body,
        outcome: REPLAYED,
        callout_id: None,
        event_id: None,
    };
    tx.keep_inbound(&inbound, now).await?;
    tracing::warn!(gateway, "a report seen before came again: kept, nothing changed");
    Ok(Outcome {
        outcome: REPLAYED,
        callout_id: None,
        incident_code: None,
        late: None,
    })
}

/// The call-out a reply answers, of that number's call-outs (newest first, with their
/// incident's code): the one whose code it names; without a code (or with one that matches
/// nothing), the newest call-out still waiting for an answer; only when none waits, the
/// newest (a count after an answer still counts). A cancelled call-out is never chosen over
/// one that waits.
pub(super) fn choose<'c>(
    open: &[&'c (Callout, String)],
    parsed: Option<&reply::Reply>,
) -> Option<&'c (Callout, String)> {
    let waiting = || {
        open.iter()
            .find(|(c, _)| c.state.awaiting())
            .or(open.first())
            .copied()
    };
    match parsed.and_then(|r| r.code.as_deref()) {
        Some(code) => open
            .iter()
            .find(|(_, c)| c.eq_ignore_ascii_case(code))
            .copied()
            .or_else(waiting),
        None => waiting(),
    }
}

/// A reply from a phone (SPEC §7): the code in it, or else the newest open call-out of that
/// number, gets the answer and the evacuation count.
async fn sms_reply(
    tx: &mut Tx,
    gateway: &str,
    event_id: Option<&str>,
    from: &str,
    text: &str,
    now: i64,
) -> Result<Outcome> {
    if let Some(id) = event_id {
        if tx.seen_event(gateway, id).await? {
            return replayed(tx, gateway, InboundKind::Sms, text, now).await;
        }
    }
    let phone = Phone::parse(from).ok();
    let contacts = match &phone {
        Some(p) => tx.contacts_by_phone(p).await?,
        None => Vec::new(),
    };
    let ids: Vec<i64> = contacts.iter().map(|c| c.id).collect();
    let open = tx.open_callouts_of_contacts(&ids).await?;
    let parsed = reply::parse(text);
    let refs: Vec<&(Callout, String)> = open.iter().collect();
    let chosen = choose(&refs, parsed.as_ref());
    let mut result = if contacts.is_empty() {
        SmsResult::UnknownNumber
    } else if chosen.is_none() {
        SmsResult::NoOpenCallout
    } else if parsed.is_none() {
        SmsResult::Unparsed
    } else {
        SmsResult::Pending
    };
    let mut late = None;
    let callout_id = chosen.map(|c| c.0.id);
    let sender = phone
        .as_ref()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| from.chars().take(32).collect());
    let inbound = NewInbound {
        gateway,
        kind: InboundKind::Sms,
        sender: Some(&sender),
        body: text,
        outcome: result.as_str(),
        callout_id,
        event_id,
    };
    let inbound_id = tx.keep_inbound(&inbound, now).await?;
    // A door-knock task answered with its result: the task is answered, the result kept, and
    // the person at the door reached (or not) by it.
    let knocked = chosen
        .filter(|(c, _)| c.knock)
        .and_then(|(c, _)| Some((c, Knock::read(text)?)));
    if let Some((task, k)) = knocked {
        let ack = Ack {
            method: AckMethod::Sms,
            note: Some(text),
            actor: None,
            inbound_id: Some(inbound_id),
        };
        if let Answered::Recorded { late: l } = knock_in(tx, task, k, &ack, now).await? {
            late = Some(l);
        }
        result = SmsResult::Knock;
        tx.set_inbound_outcome(inbound_id, result.as_str()).await?;
    }
    // Every reply the grammar reads is an answer; one with a count is an evacuation report too.
    if let (Some(r), Some((c, _)), None) = (&parsed, chosen, knocked) {
        let ack = Ack {
            method: AckMethod::Sms,
            note: Some(text),
            actor: None,
            inbound_id: Some(inbound_id),
        };
        let answered = match r.moved {
            Some(moved) => evacuation_in(tx, c, moved, r.threatened, &ack, now).await?,
            None => tx.acknowledge(c.id, &ack, now).await?,
        };
        if let Answered::Recorded { late: l } = answered {
            late = Some(l);
        }
        result = match (r.moved, answered) {
            (Some(_), _) => SmsResult::Evacuation,
            (None, Answered::Recorded { .. }) => SmsResult::Ack,
            (None, _) => SmsResult::Duplicate,
        };
        tx.set_inbound_outcome(inbound_id, result.as_str()).await?;
    }
    note_reply(tx, inbound_id, gateway, phone.as_ref(), result, callout_id, now).await?;
    Ok(Outcome {
        outcome: result.as_str(),
        callout_id,
        incident_code: chosen.map(|c| c.1.clone()),
        late,
    })
}

/// The ledger entry of a reply as it was read (`inbound.sms`: its outcome, the call-out it
/// answered, the number masked), and a warning in the log when nobody has that number. One
/// reply at a time (`sms_reply`) and a group of them (`together`) note theirs alike.
pub(super) async fn note_reply(
    tx: &mut Tx,
    inbound_id: i64,
    gateway: &str,
    phone: Option<&Phone>,
    result: SmsResult,
    callout_id: Option<i64>,
    now: i64,
) -> Result<()> {
    tx.record(
        "inbound.sms",
        format!("inbound:{inbound_id}"),
        serde_json::json!({"gateway": gateway, "from": phone.map(|p| p.masked()),
            "outcome": result.as_str(), "callout": callout_id}),
        now,
    )
    .await?;
    if result == SmsResult::UnknownNumber {
        tracing::warn!(gateway, from = %phone.map(|p| p.masked()).unwrap_or_else(|| "?".into()), "reply from an unknown number kept, nothing changed");
    }
    Ok(())
}

/// A delivery receipt or a voice result: delivered is never an answer; a key press of 1 is;
/// a call heard to the end is where the incident's policy says so.
async fn report(
    tx: &mut Tx,
    gateway: &str,
    event_id: Option<&str>,
    what: &What,
    now: i64,
) -> Result<Outcome> {
    let body = format!("{what:?}");
    if let Some(id) = event_id {
        if tx.seen_event(gateway, id).await? {
            return replayed(tx, gateway, InboundKind::Status, &body, now).await;
        }
    }
    let message = match what {
        What::Receipt { message, .. } | What::Voice { message, .. } => message,
        What::Reply { .. } => unreachable!("replies are read by sms_reply"),
    };
    let callout = match message {
        MessageRef::Key(k) => crate::store::attempts::callout_of_ref(tx, gateway, k).await?,
        MessageRef::Provider(id) => tx.callout_of_provider_id(gateway, id).await?,
    };
    let voice = |note| Ack {
        method: AckMethod::Voice,
        note: Some(note),
        actor: None,
        inbound_id: None,
    };
    let mut late = None;
    let mut acked = |a: Answered| {
        if let Answered::Recorded { late: l } = a {
            late = Some(l);
            "ack"
        } else {
            "duplicate"
        }
    };
    let outcome = match (callout, what) {
        (None, _) => "unknown-ref",
        (Some(cid), What::Receipt { delivered: true, .. }) => {
            tx.mark_delivered(cid, now).await?;
            "delivered"
        }
        (Some(_), What::Receipt { .. }) => "not-delivered",
        (
            Some(cid),
            What::Voice {
                result: Voice::Keys(k),
                ..
            },
        ) if k.trim().starts_with('1') => acked(tx.acknowledge(cid, &voice("key 1"), now).await?),
        (
            Some(_),
            What::Voice {
                result: Voice::Keys(_),
                ..
            },
        ) => "other-key",
        (
            Some(cid),
            What::Voice {
                result: Voice::Heard, ..
            },
        ) => {
            let answers = match tx.callout(cid).await? {
                Some(c) => tx
                    .incident(c.incident_id)
                    .await?
                    .is_some_and(|inc| inc.policy.heard_answers),
                None => false,
            };
            if answers {
                acked(tx.acknowledge(cid, &voice("heard in full"), now).await?)
            } else {
                "heard"
            }
        }
        (
            Some(_),
            What::Voice {
                result: Voice::NotReached(_),
                ..
            },
        ) => "not-reached",
        (Some(_), What::Reply { .. }) => unreachable!(),
    };
    let inbound = NewInbound {
        gateway,
        kind: InboundKind::Status,
        sender: None,
        body: &body,
        outcome,
        callout_id: callout,
        event_id,
    };
    let inbound_id = tx.keep_inbound(&inbound, now).await?;
    tx.record(
        "inbound.status",
        format!("inbound:{inbound_id}"),
        serde_json::json!({"gateway": gateway, "report": body, "outcome": outcome, "callout": callout}),
        now,
    )
    .await?;
    Ok(Outcome {
        outcome,
        callout_id: callout,
        incident_code: None,
        late,
    })
}
