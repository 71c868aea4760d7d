//! Answers and reports coming in: SMS replies (read with the `reply` grammar), delivery
//! receipts and voice results, the answer page, and operators recording a phone call. Every
//! inbound message is kept, understood or not; each change commits with its ledger entry.
//!
//! Every path records an answer through the store's one `Tx::acknowledge` (the rule is
//! `domain::callout::on_answer`), and an evacuation count through [`evacuation_in`], which
//! records the answer the count implies in the same unit of work: both or neither.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::answer::reply;
use crate::core::Core;
pub use crate::domain::callout::Answered;
use crate::domain::{AckMethod, Phone};
use crate::store::answers::{Ack, Evacuation};
use crate::store::callouts::Callout;
use crate::store::inbound::{InboundKind, NewInbound};
use crate::store::Tx;

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

/// What became of an inbound SMS (kept in `inbound.outcome`, returned to the gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
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
    /// The call-out was answered already.
    Duplicate,
}

impl SmsResult {
    pub fn as_str(self) -> &'static str {
        match self {
            SmsResult::UnknownNumber => "unknown-number",
            SmsResult::NoOpenCallout => "no-open-callout",
            SmsResult::Unparsed => "unparsed",
            SmsResult::Pending => "pending",
            SmsResult::Ack => "ack",
            SmsResult::Evacuation => "evacuation",
            SmsResult::Duplicate => "duplicate",
        }
    }
}

/// What became of an inbound SMS.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SmsOutcome {
    pub outcome: SmsResult,
    pub callout_id: Option<i64>,
    pub incident_code: Option<String>,
    pub late: Option<bool>,
}

/// A reply from a phone (SPEC §7): the code in it, or else the newest open call-out of that
/// number, gets the answer and the evacuation count.
pub async fn sms_reply(core: &Core, gateway: &str, from: &str, text: &str) -> Result<SmsOutcome> {
    let now = core.now();
    let mut tx = core.store.begin().await?;
    let phone = Phone::parse(from).ok();
    let contacts = match &phone {
        Some(p) => tx.contacts_by_phone(p).await?,
        None => Vec::new(),
    };
    let ids: Vec<i64> = contacts.iter().map(|c| c.id).collect();
    let open = tx.open_callouts_of_contacts(&ids).await?;
    let parsed = reply::parse(text);
    let chosen = match parsed.as_ref().and_then(|r| r.code.as_deref()) {
        Some(code) => open
            .iter()
            .find(|(_, c)| c.eq_ignore_ascii_case(code))
            .or(open.first()),
        None => open.first(),
    };
    let mut out = SmsOutcome {
        outcome: if contacts.is_empty() {
            SmsResult::UnknownNumber
        } else if chosen.is_none() {
            SmsResult::NoOpenCallout
        } else if parsed.is_none() {
            SmsResult::Unparsed
        } else {
            SmsResult::Pending
        },
        callout_id: chosen.map(|c| c.0.id),
        incident_code: chosen.map(|c| c.1.clone()),
        late: None,
    };
    let sender = phone
        .as_ref()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| from.chars().take(32).collect());
    let inbound = NewInbound {
        gateway,
        kind: InboundKind::Sms,
        sender: Some(&sender),
        body: text,
        outcome: out.outcome.as_str(),
        callout_id: out.callout_id,
    };
    let inbound_id = tx.keep_inbound(&inbound, now).await?;
    // Every reply the grammar reads is an answer; one with a count is an evacuation report too.
    if let (Some(r), Some((c, _))) = (&parsed, chosen) {
        let ack = Ack {
            method: AckMethod::Sms,
            note: Some(text),
            actor: None,
            inbound_id: Some(inbound_id),
        };
        let answered = match r.moved {
            Some(moved) => evacuation_in(&mut tx, c, moved, r.threatened, &ack, now).await?,
            None => tx.acknowledge(c.id, &ack, now).await?,
        };
        if let Answered::Recorded { late } = answered {
            out.late = Some(late);
        }
        out.outcome = match (r.moved, answered) {
            (Some(_), _) => SmsResult::Evacuation,
            (None, Answered::Recorded { .. }) => SmsResult::Ack,
            (None, _) => SmsResult::Duplicate,
        };
        tx.set_inbound_outcome(inbound_id, out.outcome.as_str()).await?;
    }
    tx.record(
        "inbound.sms",
        format!("inbound:{inbound_id}"),
        serde_json::json!({"gateway": gateway, "from": phone.as_ref().map(|p| p.masked()),
            "outcome": out.outcome, "callout": out.callout_id}),
        now,
    )
    .await?;
    tx.commit().await?;
    if out.outcome == SmsResult::UnknownNumber {
        tracing::warn!(gateway, from = %phone.map(|p| p.masked()).unwrap_or_else(|| "?".into()), "reply from an unknown number kept, nothing changed");
    }
    Ok(out)
}

/// A delivery receipt or voice result of the generic protocol (SPEC §5).
#[derive(Debug, Clone, Deserialize)]
pub struct Receipt {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub status: String,
    #[serde(default)]
    pub detail: Option<String>,
}

pub async fn receipt(core: &Core, gateway: &str, r: &Receipt) -> Result<&'static str> {
    let now = core.now();
    let mut tx = core.store.begin().await?;
    let attempt = crate::store::attempts::callout_of_ref(&mut tx, gateway, &r.reference).await?;
    let voice = |note| Ack {
        method: AckMethod::Voice,
        note: Some(note),
        actor: None,
        inbound_id: None,
    };
    let outcome = match (attempt, r.status.as_str()) {
        (None, _) => "unknown-ref",
        (Some(cid), "delivered") => {
            tx.mark_delivered(cid, now).await?;
            "delivered"
        }
        // A key press of 1, or a voice call heard to the end, is an answer (SPEC §2).
        (Some(cid), "answered") if r.detail.as_deref().map(str::trim) == Some("1") => {
            tx.acknowledge(cid, &voice("key 1"), now).await?;
            "ack"
        }
        (Some(cid), "heard") => {
            tx.acknowledge(cid, &voice("heard in full"), now).await?;
            "ack"
        }
        (Some(_), "failed") => "failed",
        (Some(_), _) => "ignored",
    };
    let body = serde_json::json!({"id": r.id, "ref": r.reference, "status": r.status, "detail": r.detail});
    let inbound = NewInbound {
        gateway,
        kind: InboundKind::Status,
        sender: None,
        body: &body.to_string(),
        outcome,
        callout_id: attempt,
    };
    let inbound_id = tx.keep_inbound(&inbound, now).await?;
    tx.record(
        "inbound.status",
        format!("inbound:{inbound_id}"),
        serde_json::json!({"gateway": gateway, "status": r.status, "outcome": outcome, "callout": attempt}),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(outcome)
}
