//! Answers and reports coming in: SMS replies (read with the `reply` grammar), delivery
//! receipts and voice results, the answer page, and operators recording a phone call. Every
//! inbound message is kept, understood or not; each change commits with its ledger entry.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::answer::reply;
use crate::core::Core;
use crate::domain::callout::{on_answer, Answer, State};
use crate::domain::{AckMethod, Phone};
use crate::store::answers::{self, Evacuation};
use crate::store::incidents::{self, Callout};
use crate::store::ledger;
use crate::store::{roster, Backend};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Answered {
    Recorded { late: bool },
    Duplicate,
    NoSuchCallout,
}

/// Records an answer to a call-out; a second genuine answer changes nothing.
pub async fn answer(
    core: &Core,
    callout_id: i64,
    method: AckMethod,
    note: Option<&str>,
    actor: Option<&str>,
) -> Result<Answered> {
    let mut tx = core.store.begin().await?;
    let r = answer_in(
        &mut tx,
        core.store.backend,
        callout_id,
        method,
        note,
        actor,
        None,
        core.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(r)
}

// Eight inputs until the store boundary gives this one typed call (issue 8, in progress).
#[allow(clippy::too_many_arguments)]
async fn answer_in(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    callout_id: i64,
    method: AckMethod,
    note: Option<&str>,
    actor: Option<&str>,
    inbound_id: Option<i64>,
    now: i64,
) -> Result<Answered> {
    let Some(c) = incidents::callout(conn, callout_id).await? else {
        return Ok(Answered::NoSuchCallout);
    };
    let state = State::parse(&c.state).unwrap_or(State::Planned);
    match on_answer(state, now, c.deadline_at) {
        Answer::Duplicate => Ok(Answered::Duplicate),
        Answer::Record { late } => {
            answers::record_ack(
                conn,
                backend,
                callout_id,
                method.as_str(),
                late,
                note,
                actor,
                inbound_id,
                now,
            )
            .await?;
            Ok(Answered::Recorded { late })
        }
    }
}

/// An evacuation count for the region of a call-out.
pub async fn evacuation(
    core: &Core,
    c: &Callout,
    moved: i64,
    threatened: Option<i64>,
    method: &str,
) -> Result<()> {
    let mut tx = core.store.begin().await?;
    evacuation_in(
        &mut tx,
        core.store.backend,
        c,
        moved,
        threatened,
        method,
        core.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn evacuation_in(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    c: &Callout,
    moved: i64,
    threatened: Option<i64>,
    method: &str,
    now: i64,
) -> Result<i64> {
    answers::record_evacuation(
        conn,
        backend,
        &Evacuation {
            incident_id: c.incident_id,
            callout_id: Some(c.id),
            reporter: &c.contact_key,
            region_code: &c.region_code,
            moved,
            threatened,
            method,
        },
        now,
    )
    .await
}

/// What became of an inbound SMS.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SmsOutcome {
    pub outcome: &'static str,
    pub callout_id: Option<i64>,
    pub incident_code: Option<String>,
    pub late: Option<bool>,
}

/// A reply from a phone (SPEC §7): the code in it, or else the newest open call-out of that
/// number, gets the answer and the evacuation count.
pub async fn sms_reply(core: &Core, gateway: &str, from: &str, text: &str) -> Result<SmsOutcome> {
    let now = core.now();
    let backend = core.store.backend;
    let mut tx = core.store.begin().await?;
    let phone = Phone::parse(from).ok();
    let contacts = match &phone {
        Some(p) => roster::contacts_by_phone(&mut tx, p).await?,
        None => Vec::new(),
    };
    let ids: Vec<i64> = contacts.iter().map(|c| c.id).collect();
    let open = incidents::open_callouts_of_contacts(&mut tx, &ids).await?;
    let parsed = reply::parse(text);
    let chosen = match parsed.as_ref().and_then(|r| r.code.as_deref()) {
        Some(code) => open
            .iter()
            .find(|(_, c)| c.eq_ignore_ascii_case(code))
            .or(open.first()),
        None => open.first(),
    };
    let mut out = SmsOutcome {
        outcome: "",
        callout_id: chosen.map(|c| c.0.id),
        incident_code: chosen.map(|c| c.1.clone()),
        late: None,
    };
    out.outcome = if contacts.is_empty() {
        "unknown-number"
    } else if chosen.is_none() {
        "no-open-callout"
    } else if parsed.is_none() {
        "unparsed"
    } else {
        "pending"
    };
    let inbound_id: i64 = sqlx::query_scalar(
        "INSERT INTO inbound (gateway, kind, sender, body, outcome, callout_id, received_at)
         VALUES ($1, 'sms', $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(gateway)
    .bind(
        phone
            .as_ref()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| from.chars().take(32).collect()),
    )
    .bind(text)
    .bind(out.outcome)
    .bind(out.callout_id)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    if let (Some(r), Some((c, _))) = (&parsed, chosen) {
        let mut outcome = "duplicate";
        if r.ack {
            if let Answered::Recorded { late } = answer_in(
                &mut tx,
                backend,
                c.id,
                AckMethod::Sms,
                Some(text),
                None,
                Some(inbound_id),
                now,
            )
            .await?
            {
                outcome = "ack";
                out.late = Some(late);
            }
        }
        if let Some(moved) = r.moved {
            evacuation_in(&mut tx, backend, c, moved, r.threatened, "sms", now).await?;
            outcome = "evacuation";
        }
        out.outcome = outcome;
        sqlx::query("UPDATE inbound SET outcome = $1 WHERE id = $2")
            .bind(outcome)
            .bind(inbound_id)
            .execute(&mut *tx)
            .await?;
    }
    ledger::record(&mut tx, backend, now, "inbound.sms",
            format!("inbound:{inbound_id}"),
            serde_json::json!({"gateway": gateway, "from": phone.as_ref().map(|p| p.masked()), "outcome": out.outcome,
                "callout": out.callout_id}))
    .await?;
    tx.commit().await?;
    if out.outcome == "unknown-number" {
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
    let outcome = match (attempt, r.status.as_str()) {
        (None, _) => "unknown-ref",
        (Some(cid), "delivered") => {
            incidents::transition(
                &mut tx,
                &[cid],
                &[State::Sent],
                State::Delivered,
                Some("delivered_at"),
                now,
            )
            .await?;
            "delivered"
        }
        // A key press of 1, or a voice call heard to the end, is an answer (SPEC §2).
        (Some(cid), "answered") if r.detail.as_deref().map(str::trim) == Some("1") => {
            answer_in(
                &mut tx,
                core.store.backend,
                cid,
                AckMethod::Voice,
                Some("key 1"),
                None,
                None,
                now,
            )
            .await?;
            "ack"
        }
        (Some(cid), "heard") => {
            answer_in(
                &mut tx,
                core.store.backend,
                cid,
                AckMethod::Voice,
                Some("heard in full"),
                None,
                None,
                now,
            )
            .await?;
            "ack"
        }
        (Some(_), "failed") => "failed",
        (Some(_), _) => "ignored",
    };
    let inbound_id: i64 = sqlx::query_scalar(
        "INSERT INTO inbound (gateway, kind, sender, body, outcome, callout_id, received_at)
         VALUES ($1, 'status', NULL, $2, $3, $4, $5) RETURNING id",
    )
    .bind(gateway)
    .bind(
        serde_json::json!({"id": r.id, "ref": r.reference, "status": r.status, "detail": r.detail})
            .to_string(),
    )
    .bind(outcome)
    .bind(attempt)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    ledger::record(
        &mut tx,
        core.store.backend,
        now,
        "inbound.status",
        format!("inbound:{inbound_id}"),
        serde_json::json!({"gateway": gateway, "status": r.status, "outcome": outcome, "callout": attempt}),
    )
    .await?;
    tx.commit().await?;
    Ok(outcome)
}
